"""One-time export of a checkpoint to ONNX through Optimum, cached and locked.

`ensure_export` runs in pytest workers: it computes the export's cache key (checkpoint fingerprint,
device, dtype, medgate's export version, and the versions of the exporting libraries), and if no
export exists it takes a file lock and runs `python -m medgate.backends.export` in a subprocess,
so the worker itself never imports torch. Concurrent workers wait for the first one's export.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from medgate.backends.base import BackendUnavailable
from medgate.paths import cache_dir

EXPORT_VERSION = 2  # 2: eager attention (see export())
EXPORT_LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "config.json")
COMPLETE_MARKER = "medgate_export.json"


class ExportError(RuntimeError):
    pass


def library_versions(names: tuple[str, ...] = EXPORT_LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def export_key(fingerprint: str, device: str, dtype: str) -> str:
    payload = {"fingerprint": fingerprint, "device": device, "dtype": dtype, "version": EXPORT_VERSION,
               "libraries": library_versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def ensure_export(checkpoint: Path, fingerprint: str, device: str, dtype: str, quiet: bool = False) -> Path:
    if (checkpoint / "model.onnx").is_file() and (checkpoint / COMPLETE_MARKER).is_file():
        return checkpoint  # already a medgate export
    versions = library_versions()
    missing = [name for name in ("torch", "transformers", "optimum-onnx") if versions[name] == "absent"]
    key = export_key(fingerprint, device, dtype)
    target = cache_dir() / "onnx" / key
    if (target / COMPLETE_MARKER).is_file():
        return target
    if missing:
        raise BackendUnavailable(
            f"exporting {checkpoint} to ONNX needs {', '.join(missing)}: pip install -e '.[cpu]' "
            "(or '.[gpu]'); or pass --model a folder that medgate already exported"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        staging = target.with_name(f"{target.name}.exporting-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        command = [sys.executable, "-m", "medgate.backends.export", str(checkpoint), str(staging),
                   "--device", device, "--dtype", dtype, "--fingerprint", fingerprint]
        if not quiet:
            print(f"[medgate] exporting {checkpoint} to ONNX ({device}, {dtype}) once...", file=sys.stderr,
                  flush=True)
        completed = subprocess.run(command, check=False, capture_output=quiet, text=True)
        if completed.returncode != 0 or not (staging / COMPLETE_MARKER).is_file():
            detail = (completed.stderr or "")[-2000:] if quiet else "see the output above"
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportError(f"ONNX export of {checkpoint} failed (exit {completed.returncode}): {detail}")
        os.replace(staging, target)
    return target


def export(checkpoint: Path, out: Path, device: str, dtype: str, fingerprint: str) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoModelForCausalLM

    from medgate.backends.graph import add_logits_index

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"medgate: the fp16 export for --device cuda runs on the GPU through torch, and this torch "
                         f"({torch.__version__}) sees no CUDA device: install a CUDA build of torch (make setup "
                         "TORCH_SPEC=...), or export on a machine that has one and pass --model=<that export>")
    started = time.perf_counter()
    # Eager attention: the SDPA export guards every layer's softmax against fully masked rows with
    # IsNaN/Where over [batch, heads, seq, seq], which took a third of ONNX Runtime's time on CPU
    # (measured: 1118 ms -> 715 ms for 100 MedQA prompts with the tiny model); eager attention
    # computes the same values (softmax in fp32) without the guard.
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch_dtype, attn_implementation="eager")
    model = model.to(device).eval()
    # Optimum's only post-processing of a single merged decoder deduplicates tied weights (input and
    # output embeddings), and it fails on any model over 2 GB, as Llama-3.2-1B is even in fp16
    # ("EncodeError: Failed to serialize proto": it re-serializes the whole model in one protobuf).
    # Skipping it stores a tied embedding twice; untied models (Llama-3.1-8B, tiny) are unchanged.
    onnx_export_from_model(model, str(out), task="text-generation-with-past", device=device, do_validation=False,
                           no_post_process=True)
    del model
    for name in TOKENIZER_FILES:  # the Python export does not reliably copy the tokenizer
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, out / name)
    add_logits_index(out / "model.onnx")
    record = {
        "checkpoint": str(checkpoint),
        "fingerprint": fingerprint,
        "device": device,
        "dtype": dtype,
        "export_version": EXPORT_VERSION,
        "libraries": library_versions(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / COMPLETE_MARKER).write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgate.backends.export")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument("--fingerprint", required=True)
    args = parser.parse_args(argv)
    export(args.checkpoint, args.out, args.device, args.dtype, args.fingerprint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
