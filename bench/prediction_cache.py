"""What the prediction cache saves: a first run against unchanged re-runs, as whole processes.

    python bench/prediction_cache.py [--repeat N] [--out FILE] -- PYTEST_ARGS...
    python bench/prediction_cache.py -- --model random:llama-smoke --dataset medqa --data-dir=../shared/datasets/raw --mode both

1. A warm-up session with `--no-prediction-cache` builds and exports the model if needed and warms
   the file caches, so that the first run is not charged with one-time costs.
2. The first run starts from an empty prediction cache (a scratch cache folder that shares the real
   one's models, exports and items), then `--repeat` unchanged re-runs read from it. Each re-run must
   hit the cache for every case and give the first run's predictions.
3. For scale, a pytest session with as many trivial parametrized tests and no medgate: no cached
   run can be faster than pytest itself, so the ratio is bounded by (first run) / (that session).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from medgate.paths import cache_dir, fixtures_dir

SHARED_CACHE_ENTRIES = ("models", "onnx", "items")
COPIED_CACHE_FILES = ("file-hashes.json",)  # weight-file digests: a first run of a known model does not re-hash


def _session(arguments: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "pytest", *arguments], cwd=cwd, capture_output=True,
                               text=True, check=False, env={**env, "PYTHONUNBUFFERED": "1"})
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"pytest {' '.join(arguments)} exited {completed.returncode}:\n{completed.stdout[-3000:]}")
    return elapsed


def _scratch_cache(scratch: Path) -> Path:
    """A cache folder with an empty prediction cache and the real cache's models, exports, items and digests."""
    real = cache_dir()
    folder = scratch / "cache"
    folder.mkdir()
    for name in SHARED_CACHE_ENTRIES:
        (real / name).mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(real / name, target_is_directory=True)
    for name in COPIED_CACHE_FILES:
        if (real / name).is_file():
            shutil.copyfile(real / name, folder / name)
    return folder


def _predictions(report: Path) -> tuple[dict[str, Any], dict[str, int]]:
    document = json.loads(report.read_text())
    answers = {case["case_id"]: (case.get("predicted_label"), case.get("scores"), case.get("raw_output"))
               for case in document["cases"]}
    return answers, document["manifest"]["prediction_cache"]


def _bare_pytest(cases: int, scratch: Path, env: dict[str, str]) -> float:
    folder = scratch / "bare"
    folder.mkdir(exist_ok=True)
    (folder / "test_bare.py").write_text(
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('case', range({cases}))\n"
        "def test_case(case):\n    pass\n")
    return _session([str(folder / "test_bare.py"), "-q", "-p", "no:cacheprovider", "-p", "no:medgate",
                     f"--rootdir={folder}"], folder, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/prediction_cache.py",
                                     description="First run against unchanged re-runs (prediction cache).")
    parser.add_argument("--repeat", type=int, default=3, help="re-runs to time (median reported)")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip step 1 (the model is already built and exported, the files read recently)")
    parser.add_argument("pytest_args", nargs="*", help="after `--`: the suite's options (model, datasets, ...)")
    args = parser.parse_args(argv)
    root = fixtures_dir().parent
    suite = ["suites/", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        report = scratch / "report.json"
        if not args.no_warm_up:
            print("warm-up (model build and export where needed, no prediction cache) ...", flush=True)
            _session([*suite, "--no-prediction-cache", f"--report={report}"], root, dict(os.environ))
        env = {**os.environ, "MEDGATE_CACHE_DIR": str(_scratch_cache(scratch))}
        first = _session([*suite, f"--report={report}"], root, env)
        first_answers, first_cache = _predictions(report)
        cases = len(first_answers)
        print(f"first run: {first:.2f} s, {cases} cases ({first_cache['misses']} computed)", flush=True)
        reruns = []
        for _ in range(args.repeat):
            reruns.append(_session([*suite, f"--report={report}"], root, env))
            answers, counts = _predictions(report)
            if counts["misses"] or answers != first_answers:
                raise RuntimeError(f"a re-run was not served from the cache unchanged: {counts}")
            print(f"re-run: {reruns[-1]:.2f} s (all {counts['hits']} from the cache, same predictions)", flush=True)
        bare = statistics.median(_bare_pytest(cases, scratch, env) for _ in range(args.repeat))
    rerun = statistics.median(reruns)
    result = {"pytest_args": args.pytest_args, "cases": cases, "first_s": round(first, 3),
              "rerun_s": [round(value, 3) for value in reruns], "rerun_median_s": round(rerun, 3),
              "ratio": round(first / rerun, 2), "bare_pytest_s": round(bare, 3),
              "ratio_bound": round(first / bare, 2)}
    print(f"{cases} cases: first run {first:.2f} s, unchanged re-run {rerun:.2f} s (median of {len(reruns)}): "
          f"{first / rerun:.1f}x faster")
    print(f"pytest alone, {cases} empty tests: {bare:.2f} s, so no cached re-run could be more than "
          f"{first / bare:.1f}x faster than this first run")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
