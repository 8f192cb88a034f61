"""Reading the reports tests write: strict JSON (NaN and Infinity refused), checked against the schema.

`tests/conftest.py` also runs `check_written_reports` after every test over the folders it used,
so a report no test reads back is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from medgate.schemas import load_schema


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (JSON.parse and jq refuse it)")


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse)


def schema_errors(document: Any, definition: str | None = None) -> list[str]:
    schema = load_schema("report")
    if definition is not None:
        schema = {"$schema": schema["$schema"], "$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in Draft202012Validator(schema).iter_errors(document)]


def kind_of(document: Any) -> str | None:
    """`report` (a run report), `comparison` (medgate diff --format json), or None (another JSON file)."""
    if not isinstance(document, dict):
        return None
    if {"schema_version", "manifest", "cases"} <= document.keys():
        return "report"
    if {"baseline", "current", "method", "cells", "flips"} <= document.keys():
        return "comparison"
    return None


def read_report(path: Path) -> dict:
    document = strict_json(path.read_text(encoding="utf-8"))
    assert kind_of(document) == "report", f"{path} is not a medgate report"
    assert schema_errors(document) == []
    return document


def report_of(pytester: pytest.Pytester, name: str = "report.json") -> dict:
    return read_report(pytester.path / name)


def check_written_reports(folder: Path) -> list[str]:
    """Every report and comparison under `folder`, each parsed strictly and validated; the problems."""
    problems = []
    for path in sorted(folder.rglob("*.json")):
        if not path.is_file() or any(part.startswith(".") or part == "cache" for part in path.relative_to(folder).parts):
            continue
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            document = strict_json(text)
        except (UnicodeDecodeError, ValueError) as error:
            if '"schema_version"' in text or '"cells"' in text:
                problems.append(f"{path}: {error}")
            continue
        kind = kind_of(document)
        if kind is not None:
            problems += [f"{path}: {error}" for error in schema_errors(document, None if kind == "report" else kind)]
    return problems
