"""Converted items cached on disk, keyed by the upstream files' sha256 and the converter version.

Collection happens in every xdist worker, so converting thousands of records each time would be
paid once per worker per run. An entry is one header line (key, digest of the body, exclusions)
and a body of item records; it is written atomically, and an entry whose key or digest does not
match is ignored and rebuilt rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgate.datasets.converters import CONVERTER_VERSION, Converted
from medgate.datasets.registry import DatasetSpec
from medgate.items import Item, item_from_valid_dict
from medgate.paths import cache_dir

ENTRY_FORMAT = 1


def cache_key(spec: DatasetSpec, file_hashes: Sequence[str]) -> str:
    """Everything that determines the converted items: the bytes read and how they are converted."""
    payload = {
        "format": ENTRY_FORMAT,
        "converter": spec.converter,
        "converter_version": CONVERTER_VERSION,
        "dataset": spec.name,
        "languages": list(spec.languages),
        "options": spec.options,
        "files": [[f.path, digest] for f, digest in zip(spec.files, file_hashes, strict=True)],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_path(spec: DatasetSpec, key: str) -> Path:
    return cache_dir() / "items" / f"{spec.name}-{key[:24]}.json"


def _item(record: dict[str, Any]) -> Item:
    # The body's digest matched what this module wrote after validating every item, so the
    # records are rebuilt directly (validating 16k items again would cost more than converting).
    return item_from_valid_dict(record)


def read_entry(spec: DatasetSpec, key: str) -> Converted | None:
    """The cached conversion, or None when absent or not exactly what was written for this key."""
    path = entry_path(spec, key)
    try:
        data = path.read_bytes()
        header_line, _, body = data.partition(b"\n")
        header = json.loads(header_line)
        if header.get("key") != key or header.get("digest") != hashlib.sha256(body).hexdigest():
            return None
        records = json.loads(body)
        items = [_item(record) for record in records]
        excluded = {str(reason): int(count) for reason, count in header["excluded"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(items) != header.get("count"):
        return None
    return Converted(items, excluded)


def write_entry(spec: DatasetSpec, key: str, converted: Converted) -> None:
    """Write atomically; a cache that cannot be written only costs speed, never the run."""
    path = entry_path(spec, key)
    body = json.dumps([item.to_dict() for item in converted.items], ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    header = {"key": key, "digest": hashlib.sha256(body).hexdigest(), "count": len(converted.items),
              "excluded": converted.excluded, "dataset": spec.name}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + body)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
