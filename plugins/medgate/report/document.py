"""Assembling the report document and writing it atomically."""

from __future__ import annotations

import json
import math
import os
import platform
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from medgate.gates import GateRecord
from medgate.metrics import CaseRecord, MetricValue
from medgate.paths import creation_refusal
from medgate.report.items_table import factored, is_report

# 2.0: each item's question and options once, in `items` (items_table.py); 1.0 had them on every case.
SCHEMA_VERSION = "2.0"
READABLE_SCHEMA_VERSIONS = ("1.0", "2.0")
REPORTED_LIBRARIES = ("medgate", "pytest", "pytest-xdist", "onnxruntime", "onnxruntime-gpu", "onnx", "torch",
                      "transformers", "tokenizers", "optimum", "optimum-onnx", "numpy", "jsonschema")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in REPORTED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_info() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def report_status(exit_status: int, missing_cases: int) -> str:
    if exit_status == 2:  # pytest.ExitCode.INTERRUPTED
        return "interrupted"
    if missing_cases:
        return "incomplete"
    return "passed" if exit_status == 0 else "failed"


def build_report(*, run_id: str, status: str, manifest: dict[str, Any], cases: Sequence[CaseRecord],
                 missing_cases: Sequence[str], metrics: Sequence[MetricValue], gates: Sequence[GateRecord],
                 comparison: dict[str, Any] | None = None, warnings: Sequence[str] = (),
                 errors: Sequence[str] = ()) -> dict[str, Any]:
    failed = [g for g in gates if g["passed"] is False]
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": status,
        "summary": {
            "cases": len(cases),
            "correct": sum(1 for c in cases if c.get("correct")),
            "missing_cases": len(missing_cases),
            "gates": len(gates),
            "gates_failed": len(failed),
            "gates_skipped": sum(1 for g in gates if g["passed"] is None),
        },
        "manifest": manifest,
        "gates": list(gates),
        "metrics": [m.to_dict() for m in metrics],
        "missing_cases": list(missing_cases),
        "cases": list(cases),
    }
    if warnings:
        document["warnings"] = list(warnings)
    if errors:
        document["errors"] = list(errors)
    if comparison is not None:
        document["comparison"] = comparison
    return document


def _finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON readers (JSON.parse, jq) refuse the bare tokens."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_text(document: Any) -> str:
    """Strict, compact JSON in one string; a non-finite number (flagged elsewhere, e.g. `non_finite`) is null."""
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: only then pay for a walk over the whole document
        return json.dumps(_finite(document), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class ReportPathError(OSError):
    pass


def check_writable_target(path: Path) -> None:
    """Refuse a target that exists and is not a regular file: renaming over /dev/null or /dev/full (as
    root) would replace the device node, and a folder or a FIFO cannot hold a report."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a new file; if its folder cannot be made, writing says so
    except OSError as error:
        raise ReportPathError(f"{path}: cannot check the target: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device or other special file"
        raise ReportPathError(f"{path} exists and is {kind}, not a regular file; give a file path")


# The temporary file beside the target (".NAME.xxxxxxxx") and the readable siblings must fit too.
MAX_OUTPUT_NAME_BYTES = 255 - 16


def check_output_file(path: Path) -> None:
    """Refuse an output file that could not be written, before the work that fills it."""
    check_writable_target(path)
    if len(path.name.encode()) > MAX_OUTPUT_NAME_BYTES:
        raise ReportPathError(f"{path.name[:40]}...: a file name over {MAX_OUTPUT_NAME_BYTES} bytes cannot be "
                              "written beside its temporary copy")
    refusal = creation_refusal(path)
    if refusal is not None:
        raise ReportPathError(f"{path}: {refusal}")


def write_json_atomic(document: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path` and rename: readers never see half a report. A run report
    is written with its items table (question and options once per item, not on every case)."""
    # One write: json.dump would issue a write per token (100k+ calls for a large report).
    text = json_text(factored(document) if is_report(document) else document) + "\n"
    _write_atomic(path, lambda handle: handle.write(text))


def write_text_atomic(text: str, path: Path) -> None:
    _write_atomic(path, lambda handle: handle.write(text))


def emit_text(text: str, out: Path | None, command: str) -> bool:
    """A command's output: to `out` atomically, or to standard output; False (said on stderr) if unwritable."""
    if out is None:
        sys.stdout.write(text)
        return True
    try:
        write_text_atomic(text, out)
    except OSError as error:
        print(f"{command}: cannot write {out}: {error}", file=sys.stderr)
        return False
    return True


def _write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    check_writable_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            write(handle)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is meant to be shared and uploaded
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _note_written(path)


def _note_written(path: Path) -> None:
    """With $MEDGATE_WRITTEN_LOG set (medgate's own tests set it), list each file written there, so
    that every report a test makes, in whichever process, can be checked afterwards."""
    log = os.environ.get("MEDGATE_WRITTEN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{path.resolve()}\n")
