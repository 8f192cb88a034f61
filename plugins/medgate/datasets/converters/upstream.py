"""Reading upstream files defensively: every problem names the file and the record it is in."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medgate.datasets.errors import UpstreamFormatError
from medgate.items import Item, ItemError, item_from_dict


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UpstreamFormatError(
            f"{path}: not UTF-8 text (byte {error.start}): is it the right file?"
        ) from None
    except OSError as error:
        raise UpstreamFormatError(f"{path}: cannot read ({error.strerror})") from None


def read_json(path: Path) -> Any:
    """One JSON document; a truncated file is reported with the position where it breaks off."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        hint = " (the file looks truncated)" if error.pos >= len(text.rstrip()) else ""
        raise UpstreamFormatError(
            f"{path}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}{hint}"
        ) from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record) for each non-blank line of a JSON Lines file."""
    text = _read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            reason = error.msg.removesuffix(" at")  # "Unterminated string starting at" says "at" itself
            raise UpstreamFormatError(
                f"{path}:{number}: record is not valid JSON ({reason} at column {error.colno})"
            ) from None


def iter_csv_rows(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(row number, line the row starts on, fields); quoted fields may span lines."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    row_number = 0
    start = 1
    try:
        for row in reader:
            if row:
                row_number += 1
                yield row_number, start, row
            start = reader.line_num + 1
    except csv.Error as error:
        raise UpstreamFormatError(
            f"{path}:{start}: row {row_number + 1} is not valid CSV ({error})"
        ) from None


def field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """record[key], which must exist and be of `kind`."""
    if not isinstance(record, Mapping):
        raise UpstreamFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise UpstreamFormatError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        names = "/".join(k.__name__ for k in _as_tuple(kind))
        raise UpstreamFormatError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def make_item(record: dict[str, Any], where: str) -> Item:
    """Validate a converted record as any item file's record is; a failure points at the upstream record."""
    try:
        return item_from_dict(record)
    except ItemError as error:
        raise UpstreamFormatError(f"{where}: cannot convert this record: {error}") from None
