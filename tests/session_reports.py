"""Reading the report a pytester session wrote, checked against the report schema."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from medgate.schemas import load_schema


def report_of(pytester: pytest.Pytester, name: str = "report.json") -> dict:
    document = json.loads((pytester.path / name).read_text())
    errors = [e.message for e in Draft202012Validator(load_schema("report")).iter_errors(document)]
    assert errors == []
    return document
