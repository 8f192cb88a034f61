"""Datasets: resolve a `--dataset` (registered name or item file), convert, filter and sample."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.datasets.converters import CONVERTERS
from medgate.datasets.registry import DatasetSpec, UnknownDataset, get_spec, registry
from medgate.datasets.sampling import apply_subsets, stratified_sample
from medgate.items import Item, ItemError, file_sha256, load_jsonl
from medgate.paths import cache_dir, fixtures_dir

__all__ = ["check_available", "DatasetError", "LoadedDataset", "UnknownDataset", "default_data_dir", "load_dataset", "registry"]


class DatasetError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedDataset:
    name: str
    items: list[Item]
    provenance: dict[str, Any] = field(default_factory=dict)


def default_data_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """--data-dir, else MEDGATE_DATA_DIR, else a per-user cache folder."""
    if option:
        return Path(option).expanduser()
    configured = os.environ.get("MEDGATE_DATA_DIR")
    return Path(configured).expanduser() if configured else cache_dir() / "data"


def _spec_paths(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    root = fixtures_dir() / "datasets" if spec.bundled else data_dir
    paths = [root / f.path for f in spec.files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(
            f"dataset {spec.name!r}: missing {', '.join(str(p) for p in missing)}; "
            f"get it with `medgate fetch {spec.name} --data-dir {data_dir}` (or pass --data-dir where it is)"
        )
    return paths


def _load_registered(spec: DatasetSpec, data_dir: Path) -> tuple[list[Item], dict[str, int], list[dict[str, str]]]:
    paths = _spec_paths(spec, data_dir)
    converter = CONVERTERS.get(spec.converter)
    if converter is None:
        raise DatasetError(f"dataset {spec.name!r}: unknown converter {spec.converter!r}")
    converted = converter(spec, paths)
    files = [{"path": str(p), "sha256": file_sha256(p)} for p in paths]
    return converted.items, converted.excluded, files


def _load_path(path: Path) -> tuple[str, list[Item], list[dict[str, str]]]:
    items = load_jsonl(path)
    names = sorted({item.dataset for item in items})
    if len(names) != 1:
        raise ItemError(f"{path}: items name several datasets {names}; use one dataset per file")
    return names[0], items, [{"path": str(path), "sha256": file_sha256(path)}]


def check_available(name_or_path: str, data_dir: Path) -> None:
    """Cheap check when options are parsed: the name is known and its files are where expected."""
    if name_or_path.endswith(".jsonl") or Path(name_or_path).expanduser().is_file():
        if not Path(name_or_path).expanduser().is_file():
            raise DatasetError(f"item file {name_or_path} does not exist")
        return
    _spec_paths(get_spec(name_or_path), data_dir)


def load_dataset(name_or_path: str, data_dir: Path, limit: int | None = None, seed: int = 0,
                 subsets: Sequence[tuple[str, str]] = ()) -> LoadedDataset:
    candidate = Path(name_or_path).expanduser()
    excluded: dict[str, int] = {}
    if name_or_path.endswith(".jsonl") or candidate.is_file():
        if not candidate.is_file():
            raise DatasetError(f"item file {candidate} does not exist")
        name, items, files = _load_path(candidate)
        split = "file"
    else:
        spec = get_spec(name_or_path)
        name, split = spec.name, spec.split
        items, excluded, files = _load_registered(spec, data_dir)
    loaded = len(items)
    selected = apply_subsets(items, subsets)
    if limit is not None:
        selected = stratified_sample(selected, limit, seed, salt=name)
    provenance = {
        "name": name,
        "split": split,
        "files": files,
        "items_available": loaded,
        "items_excluded": excluded,
        "items_selected": len(selected),
        "subsets": [f"{k}={v}" for k, v in subsets],
        "limit": limit,
        "seed": seed,
    }
    if not selected:
        raise DatasetError(f"dataset {name!r}: no items left after --subset {provenance['subsets']}")
    return LoadedDataset(name, selected, provenance)
