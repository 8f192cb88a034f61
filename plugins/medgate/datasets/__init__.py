"""Datasets: resolve a `--dataset` (registered name or item file), convert, filter and sample."""

from __future__ import annotations

import os
import shlex
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.datasets.converters import CONVERTERS, Converted
from medgate.datasets.errors import DatasetError, DatasetWarning, FetchError, UpstreamFormatError
from medgate.datasets.item_cache import cache_key, read_entry, write_entry
from medgate.datasets.registry import DatasetSpec, UnknownDataset, get_spec, registry
from medgate.datasets.sampling import apply_subsets, stratified_sample
from medgate.items import Item, ItemError, file_sha256, load_jsonl
from medgate.paths import cache_dir, fixtures_dir

__all__ = [
    "DatasetError", "DatasetWarning", "FetchError", "LoadedDataset", "UnknownDataset", "UpstreamFormatError",
    "check_available", "convert_registered", "default_data_dir", "load_dataset", "registry", "spec_paths",
]


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


def spec_paths(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    """Where the dataset's files are, all of which must exist."""
    root = fixtures_dir() / "datasets" if spec.bundled else data_dir
    paths = [root / f.path for f in spec.files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        command = f"medgate fetch {spec.name} --data-dir {shlex.quote(str(data_dir))}"
        raise DatasetError(
            f"dataset {spec.name!r}: upstream file(s) not found: {', '.join(str(p) for p in missing)}. "
            f"Get them with `{command}`, or point --data-dir (or MEDGATE_DATA_DIR) at the folder holding them"
        )
    return paths


def _check_unique_ids(spec: DatasetSpec, items: list[Item]) -> None:
    counts = Counter(item.id for item in items)
    repeated = [item for item in items if counts[item.id] > 1]
    if repeated:
        sources = ", ".join(str(item.source) for item in repeated[:4])
        raise UpstreamFormatError(
            f"dataset {spec.name!r}: item id {repeated[0].id!r} occurs more than once ({sources})"
        )


def convert_registered(spec: DatasetSpec, paths: Sequence[Path], hashes: Sequence[str],
                       use_cache: bool = True) -> Converted:
    """Convert (or reuse the cached conversion of) exactly these files."""
    key = cache_key(spec, hashes)
    if use_cache:
        cached = read_entry(spec, key)
        if cached is not None:
            return cached
    converter = CONVERTERS.get(spec.converter)
    if converter is None:
        raise DatasetError(f"dataset {spec.name!r}: unknown converter {spec.converter!r}; "
                           f"known converters: {', '.join(sorted(CONVERTERS))}")
    try:
        converted = converter(spec, list(paths))
    except UpstreamFormatError as error:
        mismatched = [str(path) for path, upstream, digest in zip(paths, spec.files, hashes, strict=True)
                      if upstream.sha256 and upstream.sha256 != digest]
        if mismatched:
            raise UpstreamFormatError(f"{error} [sha256 of {', '.join(mismatched)} differs from the "
                                      f"registry: re-fetch with `medgate fetch {spec.name}`]") from None
        raise
    if not converted.items:
        raise UpstreamFormatError(f"dataset {spec.name!r}: {', '.join(map(str, paths))} hold no usable items")
    _check_unique_ids(spec, converted.items)
    if use_cache:
        write_entry(spec, key, converted)
    return converted


def _load_registered(spec: DatasetSpec,
                     data_dir: Path) -> tuple[list[Item], dict[str, int], list[dict[str, Any]]]:
    paths = spec_paths(spec, data_dir)
    hashes = [file_sha256(p) for p in paths]
    files: list[dict[str, Any]] = []
    for path, upstream, digest in zip(paths, spec.files, hashes, strict=True):
        record: dict[str, Any] = {"path": str(path.resolve()), "sha256": digest}
        if upstream.sha256:
            record["registry_sha256_match"] = digest == upstream.sha256
        files.append(record)
    converted = convert_registered(spec, paths, hashes)
    for record in files:
        if record.get("registry_sha256_match") is False:
            warnings.warn(f"dataset {spec.name!r}: {record['path']} is not the registered file (sha256 "
                          f"{record['sha256'][:12]}...); results are not comparable with the published "
                          "dataset",
                          DatasetWarning, stacklevel=3)
    return converted.items, converted.excluded, files


def _load_path(path: Path) -> tuple[str, list[Item], list[dict[str, Any]]]:
    items = load_jsonl(path)
    names = sorted({item.dataset for item in items})
    if len(names) != 1:
        raise ItemError(f"{path}: items name several datasets {names}; use one dataset per file")
    _refuse_registered_name(path, names[0])
    return names[0], items, [{"path": str(path), "sha256": file_sha256(path)}]


def _refuse_registered_name(path: Path, name: str) -> None:
    """An item file may not pass as a registered dataset: its items would be gated by that dataset's
    thresholds and compared with its baselines as if they were the published items."""
    spec = registry().get(name)
    if spec is None:
        return
    if spec.bundled and [path.resolve()] == [(fixtures_dir() / "datasets" / f.path).resolve() for f in spec.files]:
        return  # the bundled file itself
    raise ItemError(f"{path}: its items name dataset {name!r}, which is a registered dataset; an item file "
                    f"must use a dataset name of its own (e.g. {name + '-local'!r}), or run --dataset {name}")


def _is_item_file(name_or_path: str) -> bool:
    return name_or_path.endswith(".jsonl") or Path(name_or_path).expanduser().is_file()


def _known_values(items: Sequence[Item], subsets: Sequence[tuple[str, str]]) -> str:
    """For a filter on subject or language, the values that exist (the usual cause is a typo)."""
    hints = []
    for key in sorted({k for k, _ in subsets} & {"subject", "language"}):
        values = sorted({str(getattr(item, key)) for item in items if getattr(item, key)})
        if values:
            shown = ", ".join(values[:30]) + (", ..." if len(values) > 30 else "")
            hints.append(f"; its {key} values are: {shown}")
    return "".join(hints)


def _check_item_file(path: Path) -> None:
    if path.is_file():
        return
    if path.is_symlink() and not path.exists():
        raise DatasetError(f"item file {path} is a symbolic link to nothing")
    if path.is_dir():
        raise DatasetError(f"item file {path} is a folder, not a .jsonl file")
    if path.exists():
        raise DatasetError(f"item file {path} is not a regular file (a device or a pipe?)")
    raise DatasetError(f"item file {path} does not exist")


def check_available(name_or_path: str, data_dir: Path) -> None:
    """Cheap check when options are parsed: the name is known and its files are where expected."""
    if _is_item_file(name_or_path):
        _check_item_file(Path(name_or_path).expanduser())
        return
    spec_paths(get_spec(name_or_path), data_dir)


def load_dataset(name_or_path: str, data_dir: Path, limit: int | None = None, seed: int = 0,
                 subsets: Sequence[tuple[str, str]] = ()) -> LoadedDataset:
    candidate = Path(name_or_path).expanduser()
    excluded: dict[str, int] = {}
    details: dict[str, Any] = {}
    if _is_item_file(name_or_path):
        _check_item_file(candidate)
        name, items, files = _load_path(candidate)
        split, salt = "file", name
    else:
        spec = get_spec(name_or_path)
        name, split, salt = spec.name, spec.split, spec.sampling_salt
        items, excluded, files = _load_registered(spec, data_dir)
        details = {"languages": list(spec.languages), "converter": spec.converter,
                   "license": spec.license, "citation": spec.citation}
    loaded = len(items)
    filtered = apply_subsets(items, subsets)
    if not filtered:
        raise DatasetError(f"dataset {name!r}: no items left after --subset "
                           f"{' '.join(f'{k}={v}' for k, v in subsets)}{_known_values(items, subsets)}")
    sampled = limit is not None and limit < len(filtered)
    selected = stratified_sample(filtered, limit, seed, salt=salt) if limit is not None else filtered
    provenance = {
        "name": name,
        "split": split,
        **details,
        "files": files,
        "items_available": loaded,
        "items_excluded": dict(sorted(excluded.items())),
        "items_selected": len(selected),
        "subsets": [f"{k}={v}" for k, v in subsets],
        "limit": limit,
        "seed": seed,
        "stratified_by": "subject" if sampled else None,
    }
    return LoadedDataset(name, selected, provenance)
