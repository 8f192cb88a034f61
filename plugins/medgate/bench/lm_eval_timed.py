"""Run lm-evaluation-harness's own CLI, recording how long its `evaluator.evaluate` took.

    python -m medgate.bench.lm_eval_timed TIMING.json -- <lm_eval CLI arguments>

The wrapper only times a function; the command line, model and task are lm-eval's own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    timing_file = Path(sys.argv[1])
    arguments = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    import lm_eval.evaluator as evaluator

    original = evaluator.evaluate
    spent: list[float] = []

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    evaluator.evaluate = timed_evaluate
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *arguments]
    try:
        cli_evaluate()
    finally:
        timing_file.write_text(json.dumps({"eval_seconds": sum(spent)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
