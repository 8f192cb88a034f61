"""Converters from upstream file formats to medgate items, by the name used in the registry.

A converter takes the spec and the resolved file paths (in registry order) and returns the items
it converted plus the records it excluded, counted by reason. Converted items are cached keyed by
the files' sha256 and CONVERTER_VERSION: bump it whenever any converter's output changes.
"""

from __future__ import annotations

from pathlib import Path

from medgate.datasets.converters.base import Converted, Converter
from medgate.datasets.converters.headqa import convert_headqa
from medgate.datasets.converters.medmcqa import convert_medmcqa
from medgate.datasets.converters.medqa import convert_medqa
from medgate.datasets.converters.mmlu import convert_mmlu
from medgate.datasets.converters.pubmedqa import convert_pubmedqa
from medgate.datasets.registry import DatasetSpec
from medgate.items import load_jsonl

__all__ = ["CONVERTERS", "CONVERTER_VERSION", "Converted", "Converter"]

CONVERTER_VERSION = 1


def medgate_jsonl(spec: DatasetSpec, paths: list[Path]) -> Converted:
    items = []
    for path in paths:
        items += load_jsonl(path, expected_dataset=spec.name)
    return Converted(items)


CONVERTERS: dict[str, Converter] = {
    "medgate-jsonl": medgate_jsonl,
    "medqa-jsonl": convert_medqa,
    "medmcqa-jsonl": convert_medmcqa,
    "pubmedqa-json": convert_pubmedqa,
    "mmlu-csv": convert_mmlu,
    "headqa-json": convert_headqa,
}
