"""Time loading every registered dataset (cold and warm item cache) and collecting all their cases.

    PYTHONPATH=plugins python bench/datasets_timing.py [--data-dir ../shared/datasets/raw] [--repeat 3]

Each measurement runs in a fresh process (no in-process caches) against a throw-away cache
directory; the numbers printed are the median of --repeat runs. Collection is `pytest suites/
--collect-only -q` with every registered dataset, the original question and the default prompt.
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

ROOT = Path(__file__).resolve().parents[1]

LOAD_ALL = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from medgate.datasets import load_dataset, registry
counts = {name: len(load_dataset(name, Path(sys.argv[1])).items) for name in registry()}
print(json.dumps({"seconds": time.perf_counter() - started, "counts": counts}))
"""


def load_all(data_dir: Path, cache: Path) -> tuple[float, dict[str, int]]:
    env = {**os.environ, "MEDGATE_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "plugins")}
    output = subprocess.run([sys.executable, "-c", LOAD_ALL, str(data_dir)], env=env, check=True,
                            capture_output=True, text=True).stdout
    result = json.loads(output)
    return result["seconds"], result["counts"]


def collect_all(data_dir: Path, cache: Path, names: list[str]) -> tuple[float, int]:
    env = {**os.environ, "MEDGATE_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "plugins")}
    command = [sys.executable, "-m", "pytest", "suites/", "--collect-only", "-q", "-p", "no:cacheprovider",
               "--data-dir", str(data_dir)]
    for name in names:
        command += ["--dataset", name]
    started = time.perf_counter()
    listing = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - started
    return seconds, sum(1 for line in listing.splitlines() if "::test_mcqa[" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "raw")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cold, warm, collect_cold, collect_warm = [], [], [], []
    counts: dict[str, int] = {}
    cases = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            cache = Path(folder)
            seconds, counts = load_all(args.data_dir, cache)
            cold.append(seconds)
            warm.append(load_all(args.data_dir, cache)[0])
            collect_warm.append(collect_all(args.data_dir, cache, list(counts))[0])
        with tempfile.TemporaryDirectory() as folder:
            seconds, cases = collect_all(args.data_dir, Path(folder), list(counts))
            collect_cold.append(seconds)
    print(f"datasets: {len(counts)}, items: {sum(counts.values())}, cases collected: {cases}")
    print(f"load + convert all, cold cache:  {statistics.median(cold):.2f} s  (runs: {_fmt(cold)})")
    print(f"load all, warm cache:            {statistics.median(warm):.2f} s  (runs: {_fmt(warm)})")
    print(f"collect all cases, warm cache:   {statistics.median(collect_warm):.2f} s  (runs: {_fmt(collect_warm)})")
    print(f"collect all cases, cold cache:   {statistics.median(collect_cold):.2f} s  (runs: {_fmt(collect_cold)})")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
