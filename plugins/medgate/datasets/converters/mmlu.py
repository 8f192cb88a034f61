"""MMLU (Hendrycks et al.) subject CSVs: no header; question, four options, gold letter.

The subject comes from the file name (`anatomy_test.csv` -> anatomy), so one converter serves a
single subject and the six-subject `mmlu-medical` alike. Item ids are `<subject>-<row>`.
"""

from __future__ import annotations

from pathlib import Path

from medgate.datasets.converters.base import LABELS, Converted
from medgate.datasets.converters.upstream import iter_csv_rows, make_item
from medgate.datasets.errors import UpstreamFormatError
from medgate.datasets.registry import DatasetSpec

_SPLIT_SUFFIXES = ("_test", "_dev", "_val")


def subject_of(path: Path) -> str:
    stem = path.stem
    for suffix in _SPLIT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def convert_mmlu(spec: DatasetSpec, paths: list[Path]) -> Converted:
    items = []
    for path in paths:
        subject = subject_of(path)
        for row, line, fields in iter_csv_rows(path):
            where = f"{path}:{line} (row {row})"
            if len(fields) != 6:
                raise UpstreamFormatError(
                    f"{where}: expected 6 columns (question, A, B, C, D, answer), got {len(fields)}"
                )
            question, *options, answer = fields
            if answer not in LABELS[:4]:
                raise UpstreamFormatError(f"{where}: answer {answer!r} is not A, B, C or D")
            items.append(make_item({
                "id": f"{subject}-{row:03d}",
                "dataset": spec.name,
                "language": spec.language,
                "question": question,
                "options": [{"label": label, "text": text} for label, text in zip(LABELS, options)],
                "answer": answer,
                "subject": subject,
                "source": f"{path.name}:{line}",
            }, where))
    return Converted(items)
