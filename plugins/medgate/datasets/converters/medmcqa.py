"""MedMCQA (Pal et al.), JSON Lines: id, question, opa..opd, cop (1-based), subject_name, exp.

`exp` (the explanation) often states the answer and never reaches an item. The item id is the
upstream uuid; subject_name is the subject.
"""

from __future__ import annotations

from pathlib import Path

from medgate.datasets.converters.base import LABELS, Converted, single_path
from medgate.datasets.converters.upstream import field, iter_json_lines, make_item
from medgate.datasets.errors import UpstreamFormatError
from medgate.datasets.registry import DatasetSpec

_OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def convert_medmcqa(spec: DatasetSpec, paths: list[Path]) -> Converted:
    path = single_path(spec, paths)
    items = []
    for line, record in iter_json_lines(path):
        where = f"{path}:{line}"
        cop = field(record, "cop", int, where)
        if not 1 <= cop <= len(_OPTION_FIELDS):
            raise UpstreamFormatError(f"{where}: cop {cop} is not 1-{len(_OPTION_FIELDS)} (1-based, 1=opa)")
        subject = record.get("subject_name")
        item = {
            "id": field(record, "id", str, where),
            "dataset": spec.name,
            "language": spec.language,
            "question": field(record, "question", str, where),
            "options": [{"label": label, "text": field(record, key, str, where)}
                        for label, key in zip(LABELS, _OPTION_FIELDS)],
            "answer": LABELS[cop - 1],
            "source": f"{path.name}:{line}",
        }
        if isinstance(subject, str) and subject:
            item["subject"] = subject
        items.append(make_item(item, where))
    return Converted(items)
