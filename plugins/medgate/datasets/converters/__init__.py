"""Converters from upstream file formats to medgate items, by the name used in the registry.

A converter takes the spec and the resolved file paths and returns the items it converted plus
the records it excluded, counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medgate.datasets.registry import DatasetSpec
from medgate.items import Item, load_jsonl


@dataclass
class Converted:
    items: list[Item]
    excluded: dict[str, int] = field(default_factory=dict)


Converter = Callable[[DatasetSpec, list[Path]], Converted]


def medgate_jsonl(spec: DatasetSpec, paths: list[Path]) -> Converted:
    items: list[Item] = []
    for path in paths:
        items += load_jsonl(path, expected_dataset=spec.name)
    return Converted(items)


CONVERTERS: dict[str, Converter] = {"medgate-jsonl": medgate_jsonl}
