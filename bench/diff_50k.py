"""Measure `medgate diff` on two synthetic 50,000-case reports, and the size of the files involved.

    python bench/diff_50k.py [--out DIR] [--repeat 3]

The reports come from tests/report_factory.py: 2 datasets x 1,250 items x 4 perturbations x 5
prompts (3 log-likelihood, 2 JSON), MedQA-length questions (~110 words) and five options each;
the second checkpoint keeps the first one's answer on 95% of the cases, is drawn afresh (equally
good) on the other 5%, and is worse on one block. Each timing is a fresh
`python -m medgate diff` process (start-up, reading both reports, comparing, rendering, writing).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "tests")]  # the factory is shared with the tests

import numpy as np  # noqa: E402
from report_factory import Design, Population, make_report, simulate_records  # noqa: E402

from medgate.compare import load_report  # noqa: E402
from medgate.report import write_json_atomic  # noqa: E402
from medgate.report.readable import write_readable_outputs  # noqa: E402

DESIGN = Design(datasets=("synth-en", "synth-es"), items=1250,
                perturbations=("original", "shuffle", "typos", "gold_to_nota"),
                prompts=(("p0", "loglik"), ("p1", "loglik"), ("p2", "loglik"), ("j0", "generate"), ("j1", "generate")),
                question_words=110)


def _bytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def _size(path: Path) -> str:
    raw = path.read_bytes()
    return f"{_bytes(len(raw))} ({_bytes(len(gzip.compress(raw, compresslevel=6)))} gzipped)"


def _time(command: list[str], repeat: int) -> tuple[float, float, float, int]:
    """Median wall and CPU (user + system) seconds over `repeat` fresh processes; peak memory; the exit code.
    CPU time is reported beside wall time because on a shared, loaded machine wall time waits for the others."""
    walls, cpus, codes = [], [], set()
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        codes.add(completed.returncode)
        if completed.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(walls), statistics.median(cpus), peak_mb, codes.pop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the reports here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="medgate-bench-"))
    folder.mkdir(parents=True, exist_ok=True)

    population = Population(DESIGN, seed=0)
    start = time.perf_counter()
    base = simulate_records(population, 1.5, np.random.default_rng(1))
    redrawn = simulate_records(population, 1.5, np.random.default_rng(2), drop={("synth-en", "typos", "p1"): 1.0})
    keep = np.random.default_rng(3).random(len(base)) < 0.95
    current = [old if kept and (new["dataset"], new["perturbation"], new["prompt"]) != ("synth-en", "typos", "p1")
               else new for old, new, kept in zip(base, redrawn, keep)]
    paths = {}
    for name, records in (("base", base), ("current", current)):
        paths[name] = folder / f"{name}.json"
        document = make_report(records, run_id=name, fingerprint=name[0] * 64)
        write_json_atomic(document, paths[name])
    built = time.perf_counter() - start
    start = time.perf_counter()
    write_readable_outputs(load_report(paths["current"]), paths["current"])
    rendered = time.perf_counter() - start

    diff = [sys.executable, "-m", "medgate", "diff", str(paths["base"]), str(paths["current"])]
    rows = []
    for label, extra in (("md", ["--format", "md"]), ("json", ["--format", "json"]), ("html", ["--format", "html"]),
                         ("md + 3 regression gates", ["--format", "md", "--fail-on-regression", "accuracy:2pp",
                                                      "--fail-on-regression", "stability:2pp",
                                                      "--fail-on-regression", "compliance:2pp"])):
        out = folder / f"diff-{label.split()[0]}.{label.split()[0]}"
        wall, cpu, peak, code = _time(diff + extra + ["--out", str(out)], args.repeat)
        rows.append((label, wall, cpu, peak, code, out))

    comparison = json.loads((folder / "diff-json.json").read_text())
    print(f"cases per report: {len(base)}  (built in {built:.1f} s; .md and .html written in {rendered:.1f} s)")
    print(f"report JSON: {_size(paths['base'])}; its .md {_size(paths['current'].with_suffix('.md'))}, "
          f".html {_size(paths['current'].with_suffix('.html'))}")
    print(f"comparison: {comparison['method']['cells_tested']} cells tested, "
          f"{comparison['flips']['correct_to_wrong']} + {comparison['flips']['wrong_to_correct']} flips; "
          f"JSON {_size(folder / 'diff-json.json')}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of {args.repeat} runs")
    for label, wall, cpu, _, code, out in rows:
        print(f"  medgate diff --format {label:<26} {wall:6.2f} s wall, {cpu:6.2f} s CPU  "
              f"(exit {code}, output {_size(out)})")
    print(f"largest resident memory of a diff process: {rows[-1][3]:.0f} MB")


if __name__ == "__main__":
    main()
