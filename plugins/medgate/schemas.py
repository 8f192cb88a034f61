"""JSON Schemas shipped in fixtures/schemas, loaded once and compiled into validators."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend

from medgate.paths import fixtures_dir


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    path = fixtures_dir() / "schemas" / f"{name}.schema.json"
    with path.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


SHOWN_VALUE_CHARS = 80


@lru_cache(maxsize=None)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where `$` ends the string; in Python's re it also matches
    # before a final newline, so `^[A-Za-z0-9]{1,4}$` accepted the label "E\n".
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = extend(Draft202012Validator, {"pattern": _pattern})


@lru_cache(maxsize=None)
def validator(name: str) -> Any:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return EcmaValidator(schema)


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut at SHOWN_VALUE_CHARS."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 1] + "…"


def first_error(name: str, instance: Any) -> str | None:
    """The most relevant validation error as one readable line, or None when valid."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: (len(e.path), list(e.path)))
    if not errors:
        return None
    error = errors[0]
    where = "/".join(str(part) for part in error.absolute_path)
    # A message quotes the whole offending value (30 options before "is too long"): shorten it.
    message = error.message.replace(repr(error.instance), shown(error.instance))
    if len(message) > 4 * SHOWN_VALUE_CHARS:
        message = message[: 4 * SHOWN_VALUE_CHARS - 1] + "…"
    return f"{where}: {message}" if where else message
