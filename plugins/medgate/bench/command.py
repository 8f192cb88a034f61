"""Benchmark medgate against a plain transformers loop and lm-evaluation-harness (log-likelihood mode)
on the same cases (items x perturbations x prompts), rendered prompts and truncation. Every contender
runs once untimed (warm-up: export, file caches), then is timed as a whole process; the output has
cases/s and prompt tokens presented/s for each, medgate's tokens computed/s (after prefix sharing)
and achieved GFLOP/s beside this machine's measured fp32 matrix-product rate, the ratios of medgate
over the others, evaluation-phase rates, and the per-case agreement."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgate.backends import cuda_refusal
from medgate.bench.contenders import (
    CONTENDERS,
    SERVER_CONTENDERS,
    Run,
    Server,
    run_lm_eval,
    run_medgate,
    run_transformers,
)
from medgate.bench.workload import prepare_workload
from medgate.datasets import DatasetError, UnknownDataset, default_data_dir
from medgate.models import ModelError, materialize, resolve_model
from medgate.options import NON_NEGATIVE, POSITIVE
from medgate.paths import creation_refusal
from medgate.perturbations import PerturbationError, resolve_set
from medgate.prompts import MODES, PromptError, select_prompts
from medgate.report.document import ReportPathError, check_output_file, emit_text

# Dense fp16/bf16 peak FLOP/s, for model FLOP utilisation on a GPU; the first entry whose words all
# occur in nvidia-smi's name wins. The SXM H100 calls itself "NVIDIA H100 80GB HBM3" (no "SXM"),
# so the variants come before the plain name, as A100 before A10 and L40S before L4.
GPU_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0e12), ("H100 NVL", 835.0e12), ("H100", 989.4e12),
    ("H200 NVL", 835.0e12), ("H200", 989.4e12),
    ("A100", 312.0e12), ("A10", 125.0e12), ("L40S", 362.0e12), ("L4", 121.0e12),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny", help="alias, checkpoint folder or random:<config> (default tiny)")
    parser.add_argument("--dataset", default="medqa", help="registered dataset or .jsonl item file (default medqa)")
    parser.add_argument("--limit", type=POSITIVE, default=1000, metavar="N", help="items (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="where upstream dataset files live")
    parser.add_argument("--prompts", "--prompt", dest="prompts", default="p0",
                        help="prompt templates: names, default or all (default p0)")
    parser.add_argument("--perturbations", default="none",
                        help="perturbation set or comma-separated names, as medgate's run takes them (default none)")
    parser.add_argument("--mode", default="loglik", choices=("loglik", "generate", "both"),
                        help="which prompts --prompts selects; the other contenders score (loglik) only")
    parser.add_argument("--no-prefix-sharing", action="store_true", help="medgate runs every prompt whole")
    parser.add_argument("--contenders", help=f"subset of {','.join(CONTENDERS)} (default: all), or with --backend "
                                             f"openai of {','.join(SERVER_CONTENDERS)}")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openai"),
                        help="openai: every contender asks the server at --base-url (medgate's client against "
                             "lm-eval's local-completions)")
    parser.add_argument("--base-url", help="--backend openai: the server's /v1 endpoint")
    parser.add_argument("--concurrency", type=POSITIVE, default=16,
                        help="--backend openai: requests in flight, for medgate and lm-eval alike (default 16)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=POSITIVE, default=1, help="medgate's pytest-xdist workers (default 1)")
    parser.add_argument("--threads", type=NON_NEGATIVE, default=0, help="torch threads for the transformers loop (0: default)")
    # 4 was lm-eval's fastest here on MedQA (1000 items, 2 cores): 22.6 s at 1, 20.6 s at 4, 24.0 s at 16,
    # 29.2 s at 32, 39.5 s at "auto"; each contender gets its best setting. A GPU wants large
    # batches, which lm-eval's "auto" finds.
    parser.add_argument("--lm-eval-batch-size", help="lm-eval's --batch_size (default: 4 on CPU, auto on CUDA)")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the workload and logs in this folder (default: a temporary "
                                                  "folder, removed at the end)")


def _parameters(checkpoint: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in checkpoint.glob("*.safetensors"):
        with safe_open(str(path), "np") as handle:
            for name in handle.keys():
                total += int(__import__("numpy").prod(handle.get_slice(name).get_shape()))
    return total


def gpu_name() -> str | None:
    import subprocess

    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return listed.stdout.strip().splitlines()[0] if listed.returncode == 0 and listed.stdout.strip() else None


def peak_flops(gpu: str | None) -> float | None:
    if gpu is None:
        return None
    words = gpu.lower().replace("-", " ").split()
    for key, value in GPU_PEAK_FLOPS:
        if all(part.lower() in words for part in key.split()):
            return value
    return None


def _server(args: argparse.Namespace, checkpoint: Path) -> Server:
    """The server's model id for `checkpoint`, checked as a medgate run checks it."""
    from medgate.backends.openai import ServerSettings, check_base_url, connect
    from medgate.tokenization import TextTokenizer

    settings = ServerSettings(base_url=check_base_url(args.base_url), model_names=(args.model,))
    served = connect(settings, checkpoint, TextTokenizer(checkpoint))[2]
    return Server(settings.base_url, served.model_id, args.concurrency)


def run(args: argparse.Namespace) -> int:
    allowed = SERVER_CONTENDERS if args.backend == "openai" else CONTENDERS
    contenders = [c.strip() for c in (args.contenders or ",".join(allowed)).split(",") if c.strip()]
    unknown = set(contenders) - set(allowed)
    if unknown or "medgate" not in contenders:
        print(f"medgate bench: --contenders must include medgate and come from {', '.join(allowed)}", file=sys.stderr)
        return 2
    if (args.backend == "openai") != bool(args.base_url):
        print("medgate bench: --backend openai and --base-url go together", file=sys.stderr)
        return 2
    # medgate runs on ONNX Runtime; the other contenders (and the one-time export) on torch: both need CUDA.
    if args.device == "cuda" and (refusal := cuda_refusal(("onnxruntime", "torch"))):
        print(f"medgate bench: {refusal}", file=sys.stderr)
        return 2
    try:
        checkpoint = materialize(resolve_model(args.model))
    except ModelError as error:
        print(f"medgate bench: {error}", file=sys.stderr)
        return 2
    server = None
    if args.backend == "openai":
        try:
            server = _server(args, checkpoint)
        except (ValueError, RuntimeError) as error:
            print(f"medgate bench: {error}", file=sys.stderr)
            return 2
    try:
        modes = MODES if args.mode == "both" else (args.mode,)
        prompts = select_prompts(args.prompts, modes)
        perturbations = resolve_set(args.perturbations)
    except (PromptError, PerturbationError, ValueError) as error:
        print(f"medgate bench: {error}", file=sys.stderr)
        return 2
    if not prompts:
        print(f"medgate bench: --prompts {args.prompts} selects no prompt for --mode {args.mode}", file=sys.stderr)
        return 2
    if args.mode != "loglik" and contenders != ["medgate"]:
        print("medgate bench: the other contenders score log-likelihood prompts only: --mode loglik, or "
              "--contenders medgate", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            check_output_file(args.out)
        if args.keep is not None and (refusal := creation_refusal(args.keep / "items.jsonl")):
            raise ReportPathError(f"--keep {args.keep}: {refusal}")
    except ReportPathError as error:
        print(f"medgate bench: {error}", file=sys.stderr)
        return 2
    folder = args.keep or Path(tempfile.mkdtemp(prefix="medgate-bench-"))
    try:
        return _bench(args, contenders, checkpoint, server, prompts, perturbations, folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _bench(args: argparse.Namespace, contenders: list[str], checkpoint: Path, server: Server | None,
           prompts: list[str], perturbations: Sequence[str], folder: Path) -> int:
    try:
        workload = prepare_workload(args.dataset, default_data_dir(args.data_dir), args.limit, args.seed,
                                    perturbations, prompts, checkpoint, folder)
    except (DatasetError, UnknownDataset, ValueError, OSError) as error:
        print(f"medgate bench: {error}", file=sys.stderr)
        return 2
    n = len(workload.cases)
    matmul = matmul_gflops()

    def measure(name: str) -> Run:
        if name in ("medgate", "medgate_echo"):
            return run_medgate(workload, checkpoint, folder, args.workers, args.device, server,
                               "echo" if name == "medgate_echo" else "auto", not args.no_prefix_sharing)
        if name == "transformers":
            return run_transformers(workload, checkpoint, folder, args.device, args.threads)
        batch_size = args.lm_eval_batch_size or ("auto" if args.device == "cuda" and server is None else "4")
        return run_lm_eval(workload, checkpoint, folder, args.device, batch_size, server)

    runs: dict[str, Run] = {}
    for name in contenders:
        if not args.no_warmup:
            print(f"[bench] warm-up {name}...", file=sys.stderr, flush=True)
            measure(name)
        print(f"[bench] timing {name}...", file=sys.stderr, flush=True)
        runs[name] = measure(name)
    gpu = gpu_name() if args.device == "cuda" else None
    peak, parameters = peak_flops(gpu), _parameters(checkpoint)
    results: dict[str, Any] = {}
    for name, measured in runs.items():
        entry = {
            "wall_seconds": round(measured.wall_seconds, 3),
            "cases_per_s": round(n / measured.wall_seconds, 2),
            "tokens_per_s": round(workload.prompt_tokens / measured.wall_seconds, 1),
            "eval_seconds": round(measured.eval_seconds, 3),
            "eval_cases_per_s": round(n / measured.eval_seconds, 2) if measured.eval_seconds else None,
            "eval_tokens_per_s": round(workload.prompt_tokens / measured.eval_seconds, 1)
            if measured.eval_seconds else None,
            **measured.details,
        }
        computed = _tokens_computed(measured)
        if computed is not None:
            entry["tokens_computed"] = computed
            entry["tokens_computed_per_s"] = round(computed / measured.wall_seconds, 1)
            if measured.details.get("model_seconds"):
                # 2 FLOPs per parameter per token computed, over the time inside the model calls
                entry["achieved_gflops"] = round(2 * parameters * computed / measured.details["model_seconds"] / 1e9,
                                                 1)
        if peak and measured.eval_seconds:
            entry["mfu"] = round(2 * parameters * (computed or workload.prompt_tokens) / measured.eval_seconds / peak,
                                 4)
        results[name] = entry
    agreement = {f"{a}~{b}": round(sum(x == y for x, y in zip(runs[a].predictions, runs[b].predictions)) / n, 4)
                 for i, a in enumerate(runs) for b in list(runs)[i + 1:]}
    document = {
        "model": args.model, "checkpoint": str(checkpoint), "parameters": parameters, "dataset": args.dataset,
        "cases": n, "items": len({c.item.id for c in workload.cases}), "prompts": list(workload.prompts),
        "perturbations": list(workload.perturbations), "prompt_tokens": workload.prompt_tokens, "device": args.device,
        "matmul_fp32_gflops": matmul,
        "server": {"base_url": server.base_url, "model_id": server.model_id, "concurrency": server.concurrency}
        if server else None,
        "gpu": gpu, "host": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "contenders": results,
        "ratios": {name: round(results["medgate"]["cases_per_s"] / results[name]["cases_per_s"], 2)
                   for name in results if name != "medgate"},
        "eval_ratios": {name: round(results["medgate"]["eval_cases_per_s"] / results[name]["eval_cases_per_s"], 2)
                        for name in results if name != "medgate" and results[name]["eval_cases_per_s"]},
        "agreement": agreement,  # per case, every pair of contenders
        "agreement_with_medgate": {name: agreement[f"medgate~{name}"] for name in runs if name != "medgate"},
        "accuracy": {name: round(sum(p == case.item.answer for p, case in zip(r.predictions, workload.cases)) / n, 4)
                     for name, r in runs.items()},
    }
    _print_table(document)
    if args.out and not emit_text(json.dumps(document, indent=2) + "\n", args.out, "medgate bench"):
        return 2
    return 0


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matrix-product rate with numpy (best of `repeats` size^3 products), GFLOP/s."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b  # noqa: B018 - warm-up (thread pool, caches)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b  # noqa: B018
        best = min(best, time.perf_counter() - started)
    return round(2 * size ** 3 / best / 1e9, 1)


def _tokens_computed(measured: Run) -> int | None:
    work = measured.details.get("token_work") or {}
    return (work.get("loglik") or {}).get("computed")


def _print_table(document: dict[str, Any]) -> None:
    print(f"{document['cases']} cases ({document['items']} items of {document['dataset']} x "
          f"{len(document['perturbations'])} perturbations x {len(document['prompts'])} prompts), model "
          f"{document['model']} ({document['parameters']:,} parameters), {document['prompt_tokens']:,} prompt tokens, "
          f"{document['device']}; numpy fp32 matmul {document['matmul_fp32_gflops']} GFLOP/s")
    print(f"{'contender':<14}{'wall s':>9}{'cases/s':>10}{'presented/s':>13}{'computed/s':>12}{'GFLOP/s':>9}"
          f"{'eval cases/s':>14}")
    for name, entry in document["contenders"].items():
        computed = entry.get("tokens_computed_per_s")
        print(f"{name:<14}{entry['wall_seconds']:>9.2f}{entry['cases_per_s']:>10.2f}{entry['tokens_per_s']:>13.0f}"
              f"{'-' if computed is None else f'{computed:.0f}':>12}{entry.get('achieved_gflops') or '-':>9}"
              f"{entry['eval_cases_per_s'] or 0:>14.2f}")
    for pair, agree in document["agreement"].items():
        print(f"agreement {pair.replace('~', ' / ')}: {agree:.2%}")
    for name, ratio in document["ratios"].items():
        eval_ratio = document["eval_ratios"].get(name)
        print(f"medgate / {name}: {ratio:.2f}x whole process, {eval_ratio}x evaluation phase")
