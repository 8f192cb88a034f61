"""Reading the reports tests write: strict JSON (NaN and Infinity refused), checked against the schema.

`tests/conftest.py` also runs `check_written` after every test over every JSON file medgate wrote
during it, so a report no test reads back is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from medgate.report.items_table import restore_presented
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
    """The report as medgate reads it back: validated as written, then each case with its question and options."""
    document = strict_json(path.read_text(encoding="utf-8"))
    assert kind_of(document) == "report", f"{path} is not a medgate report"
    assert schema_errors(document) == []
    return restore_presented(document)


def report_of(pytester: pytest.Pytester, name: str = "report.json") -> dict:
    return read_report(pytester.path / name)


def check_written(paths: list[Path]) -> list[str]:
    """Each report or comparison among `paths` (that still exists) parsed strictly and validated; the problems."""
    problems = []
    for path in paths:
        if path.suffix != ".json" or not path.is_file():
            continue
        try:
            document = strict_json(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            problems.append(f"{path}: {error}")
            continue
        kind = kind_of(document)
        if kind is not None:
            problems += [f"{path}: {error}" for error in schema_errors(document, None if kind == "report" else kind)]
    return problems
