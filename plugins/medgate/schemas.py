"""JSON Schemas shipped in fixtures/schemas, loaded once and compiled into validators."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from medgate.paths import fixtures_dir


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    path = fixtures_dir() / "schemas" / f"{name}.schema.json"
    with path.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def first_error(name: str, instance: Any) -> str | None:
    """The most relevant validation error as one readable line, or None when valid."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: (len(e.path), list(e.path)))
    if not errors:
        return None
    error = errors[0]
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
