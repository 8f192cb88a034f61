"""The GPU measurements of README "Performance / GPU", in one command, for a machine with a GPU.

    python bench/gpu_acceptance.py --out DIR [--device cuda] [--small random:llama-3.2-1b]
        [--large random:llama-3.1-8b] [--dataset medqa --data-dir DIR --limit 1000] [--steps ...]

Steps (each writes its files under DIR and a line of DIR/summary.json):
- env: GPU name, onnxruntime's version and providers, torch's CUDA.
- suite: `pytest suites/ --device D --model SMALL`; the report must name the execution provider asked for.
- workers: the same model over every perturbation under p0 in both modes, with `-n 1` and `-n 4`,
  without the prediction cache: wall times and whether the predictions are identical.
- parity: `medgate parity --model SMALL --device D` (fp16 on CUDA must agree on 99.5% of labels).
- bench: `medgate bench --model LARGE --device D` against the transformers loop and, where it is
  installed, lm-evaluation-harness: cases/s, tokens/s, MFU, ratios.

Where medgate is not installed (a GPU host given only wheels on PYTHONPATH), it is run from
plugins/ with its pytest plugin named explicitly. On a CPU, `--device cpu --small tiny --large tiny`
runs the same steps in about a minute (the project's tests do).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("env", "suite", "workers", "parity", "bench")


def _environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "plugins"), env.get("PYTHONPATH")) if p)
    return env


def _plugin_arguments() -> list[str]:
    try:
        metadata.distribution("medgate")
        return []
    except metadata.PackageNotFoundError:
        return ["-p", "medgate.pytest_plugin"]  # no entry point without an install


def _run(name: str, command: list[str], out: Path, allowed: tuple[int, ...] = (0,)) -> float:
    print(f"[gpu-acceptance] {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with (out / f"{name}.log").open("w") as log:
        completed = subprocess.run(command, cwd=ROOT, env=_environment(), stdout=log, stderr=subprocess.STDOUT,
                                   check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode not in allowed:
        raise RuntimeError(f"{name} exited {completed.returncode} after {elapsed:.1f} s; see {out / f'{name}.log'}")
    return elapsed


def _pytest(name: str, arguments: list[str], out: Path) -> tuple[float, dict[str, Any]]:
    report = out / f"{name}.json"
    wall = _run(name, [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider",
                       *_plugin_arguments(), f"--report={report}", *arguments], out, allowed=(0, 1))
    return wall, json.loads(report.read_text())


def step_env(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from medgate.bench.command import gpu_name

    info: dict[str, Any] = {"gpu": gpu_name(), "python": sys.version.split()[0]}
    try:
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__, providers=onnxruntime.get_available_providers())
    except ImportError:
        info["onnxruntime"] = None
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available())
    except ImportError:
        info["torch"] = None
    return info


def step_suite(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    wall, report = _pytest("suite", ["--device", args.device, f"--model={args.small}"], out)
    provider = report["manifest"]["execution_provider"]
    wanted = "CUDAExecutionProvider" if args.device == "cuda" else "CPUExecutionProvider"
    if provider != wanted:
        raise RuntimeError(f"suite ran on {provider}, not {wanted}")
    return {"wall_s": round(wall, 2), "status": report["status"], "cases": len(report["cases"]),
            "execution_provider": provider}


def step_workers(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    common = ["--device", args.device, f"--model={args.small}", "--perturbations", args.worker_perturbations,
              "--prompts", "p0,j0", "--mode", "both", "--no-prediction-cache"]
    result: dict[str, Any] = {}
    predictions = {}
    for workers in (1, 4):
        wall, report = _pytest(f"workers-{workers}", [*common, "-n", str(workers)], out)
        predictions[workers] = {case["case_id"]: case.get("predicted_label") for case in report["cases"]}
        result[f"n{workers}_wall_s"] = round(wall, 2)
        result["cases"] = len(report["cases"])
    result["identical_predictions"] = predictions[1] == predictions[4]
    result["n4_over_n1"] = round(result["n1_wall_s"] / result["n4_wall_s"], 2)
    return result


def step_parity(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    target = out / "parity.json"
    _run("parity", [sys.executable, "-m", "medgate", "parity", f"--model={args.small}", "--device", args.device,
                    "--out", str(target)], out, allowed=(0, 1))
    result = json.loads(target.read_text())
    return {key: result[key] for key in ("cases", "label_agreement", "required_agreement", "max_abs_logit_diff",
                                         "max_abs_logprob_diff", "passed")}


def step_bench(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    target = out / "bench.json"
    contenders = "medgate,transformers" + (",lm_eval" if importlib.util.find_spec("lm_eval") else "")
    command = [sys.executable, "-m", "medgate", "bench", f"--model={args.large}", "--device", args.device,
               "--dataset", args.dataset, "--limit", str(args.limit), "--contenders", contenders,
               "--out", str(target)]
    if args.data_dir:
        command.append(f"--data-dir={args.data_dir}")
    _run("bench", command, out)
    result = json.loads(target.read_text())
    return {"contenders": {name: {key: entry.get(key) for key in ("cases_per_s", "tokens_per_s", "mfu")}
                           for name, entry in result["contenders"].items()},
            "ratios": result["ratios"], "agreement_with_medgate": result["agreement_with_medgate"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu_acceptance.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--small", default="random:llama-3.2-1b", help="model for suite, workers and parity")
    parser.add_argument("--large", default="random:llama-3.1-8b", help="model for the benchmark")
    parser.add_argument("--dataset", default="medqa")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--worker-perturbations", default="all")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if unknown := set(steps) - set(STEPS):
        parser.error(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    sys.path.insert(0, str(ROOT / "plugins"))
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    functions = {"env": step_env, "suite": step_suite, "workers": step_workers, "parity": step_parity,
                 "bench": step_bench}
    failed = False
    for name in steps:
        try:
            summary[name] = functions[name](args, args.out)
        except (RuntimeError, OSError, KeyError, json.JSONDecodeError) as error:
            summary[name] = {"error": str(error)}
            failed = True
        print(f"[gpu-acceptance] {name}: {json.dumps(summary[name])}", flush=True)
        # Written after every step: a call cut off at its time limit keeps what was measured.
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
