"""Per-case overhead of the medgate plugin, with the model call excluded.

    python bench/overhead.py [--perturbations SET] [--prompts SPEC] [--mode MODE] [--repeat N]

Runs the suite once to fill the prediction cache, then times (a) sessions that run every case with
predictions served from the cache (no model call), and (b) sessions that collect the same cases and
deselect them all. (a) - (b), divided by the number of cases, is what the plugin and pytest add per
case: fixture setup, tokenization and cache lookup, the test protocol, the report and the merge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medgate.paths import fixtures_dir


def _session(arguments: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "pytest", *arguments], cwd=cwd, capture_output=True,
                               text=True, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 1, 5):
        raise RuntimeError(f"pytest {' '.join(arguments)} exited {completed.returncode}:\n{completed.stdout[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/overhead.py")
    parser.add_argument("--perturbations", default="none")
    parser.add_argument("--prompts", default="default")
    parser.add_argument("--mode", default="loglik")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    root = fixtures_dir().parent
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        common = ["suites/", "-q", "-p", "no:cacheprovider", "--perturbations", args.perturbations,
                  "--prompts", args.prompts, "--mode", args.mode]
        if args.workers:
            common += ["-n", str(args.workers)]
        _session([*common, f"--report={report}"], root)  # fills the prediction cache
        document = json.loads(report.read_text())
        cases = len(document["cases"])
        full = [_session([*common, f"--report={report}"], root) for _ in range(args.repeat)]
        assert json.loads(report.read_text())["manifest"]["prediction_cache"]["misses"] == 0
        empty = [_session([*common, "-k", "not test_mcqa and not gate"], root) for _ in range(args.repeat)]
        bare = [_session(["suites/", "-q", "-p", "no:cacheprovider", "-p", "no:medgate", "-k", "nothing"], root)
                for _ in range(args.repeat)]
    full_s, empty_s, bare_s = (statistics.median(v) for v in (full, empty, bare))
    print(f"{cases} cases: {full_s:.2f} s running them with cached predictions, {empty_s:.2f} s collecting and "
          f"deselecting them, {bare_s:.2f} s for pytest without medgate")
    print(f"per case, model excluded: {(full_s - empty_s) / cases * 1000:.2f} ms to run, "
          f"{(empty_s - bare_s) / cases * 1000:.2f} ms to collect")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
