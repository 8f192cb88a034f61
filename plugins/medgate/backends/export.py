"""One-time export of a checkpoint to ONNX through Optimum, cached and locked.

`ensure_export` runs in pytest workers: it computes the export's cache key (checkpoint fingerprint,
device, dtype, medgate's export version, and the versions of the exporting libraries), and if no
export exists it takes a file lock and runs `python -m medgate.backends.export` in a subprocess,
so the worker itself never imports torch. Concurrent workers wait for the first one's export.

The marker records every exported file's size and sha256, checked whenever the export is used
(cheaply: a file's hash is remembered while its inode, size and times are unchanged), so a
truncated or rewritten cached `model.onnx` is rebuilt rather than trusted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections import deque
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from medgate.backends.base import BackendUnavailable
from medgate.checkpoint_files import CheckpointError, audit_checkpoint, checked_file
from medgate.fingerprint import file_content_hash
from medgate.paths import cache_dir

# 2: eager attention (see export()); 3: the marker records each file's size and sha256;
# 4: grouped-query attention without repeated key/value heads (graph.py)
EXPORT_VERSION = 4
EXPORT_LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "config.json")
COMPLETE_MARKER = "medgate_export.json"


class ExportError(RuntimeError):
    pass


class DamagedExportWarning(UserWarning):
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


def exported_files(folder: Path) -> dict[str, dict[str, Any]]:
    """What the marker records: each file of the export (the graph and its external data) by size and hash."""
    return {path.name: {"size": path.stat().st_size, "sha256": file_content_hash(path)}
            for path in sorted(folder.iterdir()) if path.is_file() and path.name != COMPLETE_MARKER}


def export_problem(folder: Path, fingerprint: str | None = None) -> str | None:
    """Why the export in `folder` cannot be used as it is, or None when every recorded file is intact."""
    try:
        record = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))
        files: dict[str, dict[str, Any]] = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{folder / COMPLETE_MARKER} is missing, unreadable or from an older medgate"
    if fingerprint is not None and record.get("fingerprint") != fingerprint:
        return f"{folder} was exported from another checkpoint (fingerprint {str(record.get('fingerprint'))[:12]})"
    if "model.onnx" not in files:
        return f"{folder / COMPLETE_MARKER} records no model.onnx"
    for name, expected in files.items():
        path = folder / name
        try:
            if path.is_symlink() or not path.is_file():
                return f"{path} is missing or not a regular file"
            size = path.stat().st_size
            if size != expected["size"]:
                return f"{path} has {size} bytes, the export wrote {expected['size']} (truncated or replaced)"
            if file_content_hash(path) != expected["sha256"]:
                return f"{path} is not the file the export wrote (its sha256 differs)"
        except (OSError, KeyError, TypeError) as error:
            return f"{path}: cannot be checked ({error})"
    return None


def ensure_export(checkpoint: Path, fingerprint: str, device: str, dtype: str, quiet: bool = False) -> Path:
    if (checkpoint / "model.onnx").is_file() and (checkpoint / COMPLETE_MARKER).is_file():
        problem = export_problem(checkpoint)  # already a medgate export, which only its source can rebuild
        if problem:
            raise ExportError(f"--model {checkpoint} is a damaged medgate export: {problem}; export it again")
        return checkpoint
    versions = library_versions()
    missing = [name for name in ("torch", "transformers", "optimum-onnx") if versions[name] == "absent"]
    key = export_key(fingerprint, device, dtype)
    target = cache_dir() / "onnx" / key
    if (target / COMPLETE_MARKER).is_file() and export_problem(target, fingerprint) is None:
        return target
    if missing:
        raise BackendUnavailable(
            f"exporting {checkpoint} to ONNX needs {', '.join(missing)}: pip install -e '.[cpu]' "
            "(or '.[gpu]'); or pass --model a folder that medgate already exported"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            problem = export_problem(target, fingerprint)
            if problem is None:
                return target
            warnings.warn(f"rebuilding the cached ONNX export {target}: {problem}", DamagedExportWarning,
                          stacklevel=2)
            damaged = target.with_name(f"{target.name}.damaged-{os.getpid()}")
            os.replace(target, damaged)
            shutil.rmtree(damaged, ignore_errors=True)
        staging = target.with_name(f"{target.name}.exporting-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        command = [sys.executable, "-m", "medgate.backends.export", str(checkpoint), str(staging),
                   "--device", device, "--dtype", dtype, "--fingerprint", fingerprint]
        if not quiet:
            print(f"[medgate] exporting {checkpoint} to ONNX ({device}, {dtype}) once...", file=sys.stderr,
                  flush=True)
        # stdin closed: nothing in the export (transformers asking to trust a folder's code) can wait on a user.
        returncode, tail = _run_keeping_tail(command, echo=not quiet)
        if returncode != 0 or not (staging / COMPLETE_MARKER).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportError(f"ONNX export of {checkpoint} failed (exit {returncode}): {_cause(tail)}")
        os.replace(staging, target)
    return target


def _run_keeping_tail(command: list[str], echo: bool, keep: int = 40) -> tuple[int, list[str]]:
    """Run, echoing standard error as it comes (an export takes minutes) and keeping its last lines,
    so the report can say why an export failed rather than point at a terminal nobody kept."""
    tail: deque[str] = deque(maxlen=keep)
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=None if echo else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, errors="replace") as process:
        assert process.stderr is not None
        for line in process.stderr:
            if echo:
                sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
    return process.returncode, list(tail)


def _cause(tail: list[str]) -> str:
    """The exception line of a Python traceback (the last `SomeError: ...`), else the last lines said."""
    said = [line.strip() for line in tail if line.strip()]
    if not said:
        return "it printed nothing"
    raised = [line for line in said if _EXCEPTION_LINE.match(line)]
    return (raised[-1] if raised else " | ".join(said[-3:]))[:500]


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def export(checkpoint: Path, out: Path, device: str, dtype: str, fingerprint: str) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoModelForCausalLM

    from medgate.backends.graph import prepare_graph

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"medgate: the fp16 export for --device cuda runs on the GPU through torch, and this torch "
                         f"({torch.__version__}) sees no CUDA device: install a CUDA build of torch (make setup "
                         "TORCH_SPEC=...), or export on a machine that has one and pass --model=<that export>")
    try:
        audit_checkpoint(checkpoint)  # what transformers reads below: the same rules as medgate's own reads
    except CheckpointError as error:
        raise SystemExit(f"medgate: refusing checkpoint folder {checkpoint}: {error}") from None
    started = time.perf_counter()
    # Eager attention: the SDPA export guards every layer's softmax against fully masked rows with
    # IsNaN/Where over [batch, heads, seq, seq], which took a third of ONNX Runtime's time on CPU
    # (measured: 1118 ms -> 715 ms for 100 MedQA prompts with the tiny model); eager attention
    # computes the same values (softmax in fp32) without the guard.
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch_dtype, attn_implementation="eager",
                                                 trust_remote_code=False)
    model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' `to` is typed oddly
    # Optimum's only post-processing of a single merged decoder deduplicates tied weights (input and
    # output embeddings), and it fails on any model over 2 GB, as Llama-3.2-1B is even in fp16
    # ("EncodeError: Failed to serialize proto": it re-serializes the whole model in one protobuf).
    # Skipping it stores a tied embedding twice; untied models (Llama-3.1-8B, tiny) are unchanged.
    onnx_export_from_model(model, str(out), task="text-generation-with-past", device=device, do_validation=False,
                           no_post_process=True)
    heads = int(getattr(model.config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(model.config, "num_key_value_heads", None) or heads)
    del model
    for name in TOKENIZER_FILES:  # the Python export does not reliably copy the tokenizer
        if (checkpoint / name).is_file():
            shutil.copyfile(checked_file(checkpoint, name), out / name)
    rewrites = prepare_graph(out / "model.onnx", heads, kv_heads)
    record = {
        "checkpoint": str(checkpoint),
        "fingerprint": fingerprint,
        "device": device,
        "dtype": dtype,
        "export_version": EXPORT_VERSION,
        "graph_rewrites": dataclasses.asdict(rewrites),
        "libraries": library_versions(),
        "seconds": round(time.perf_counter() - started, 2),
        "files": exported_files(out),
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
