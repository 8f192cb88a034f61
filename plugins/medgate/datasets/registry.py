"""The dataset registry (fixtures/datasets/registry.toml): names, files, checksums, provenance."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from medgate.paths import fixtures_dir


@dataclass(frozen=True)
class UpstreamFile:
    path: str  # relative to the data directory (or to fixtures/datasets for bundled data)
    sha256: str | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    languages: tuple[str, ...]
    split: str
    converter: str
    files: tuple[UpstreamFile, ...]
    bundled: bool = False
    license: str = ""
    citation: str = ""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # converter arguments (subject, split file...)


class UnknownDataset(KeyError):
    pass


def _spec(name: str, entry: dict[str, Any]) -> DatasetSpec:
    files = tuple(
        UpstreamFile(path=f["path"], sha256=f.get("sha256"), urls=tuple(f.get("urls", ())))
        for f in entry.get("files", ())
    )
    return DatasetSpec(
        name=name,
        languages=tuple(entry.get("languages", ())),
        split=entry.get("split", ""),
        converter=entry["converter"],
        files=files,
        bundled=bool(entry.get("bundled", False)),
        license=entry.get("license", ""),
        citation=entry.get("citation", ""),
        description=entry.get("description", ""),
        options=dict(entry.get("options", {})),
    )


@lru_cache(maxsize=None)
def registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    source = path or fixtures_dir() / "datasets" / "registry.toml"
    with source.open("rb") as handle:
        data = tomllib.load(handle)
    return {name: _spec(name, entry) for name, entry in data.items()}


def get_spec(name: str) -> DatasetSpec:
    known = registry()
    if name not in known:
        raise UnknownDataset(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(known))}")
    return known[name]
