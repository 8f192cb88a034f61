"""What every converter shares: its result type and the checks on the files it is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medgate.datasets.errors import DatasetError
from medgate.datasets.registry import DatasetSpec
from medgate.items import Item

LABELS = ("A", "B", "C", "D", "E", "F")


@dataclass
class Converted:
    items: list[Item]
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> records left out


Converter = Callable[[DatasetSpec, list[Path]], Converted]


def expect_paths(spec: DatasetSpec, paths: list[Path], count: int) -> list[Path]:
    if len(paths) != count:
        raise DatasetError(f"dataset {spec.name!r}: converter {spec.converter!r} takes {count} file(s), "
                           f"the registry lists {len(paths)}")
    return paths


def single_path(spec: DatasetSpec, paths: list[Path]) -> Path:
    return expect_paths(spec, paths, 1)[0]
