"""MedQA-USMLE (Jin et al.), JSON Lines: question, options {A..D}, answer_idx, answer, meta_info.

The item id is the line number (`0017`); `meta_info` (step1, step2&3) becomes the subject, which
is what a seeded --limit stratifies by. `metamap_phrases` is derived from the question and unused.
"""

from __future__ import annotations

from pathlib import Path

from medgate.datasets.converters.base import Converted, single_path
from medgate.datasets.converters.upstream import field, iter_json_lines, make_item
from medgate.datasets.errors import UpstreamFormatError
from medgate.datasets.registry import DatasetSpec


def convert_medqa(spec: DatasetSpec, paths: list[Path]) -> Converted:
    path = single_path(spec, paths)
    items = []
    for line, record in iter_json_lines(path):
        where = f"{path}:{line}"
        options = field(record, "options", dict, where)
        answer = field(record, "answer_idx", str, where)
        gold_text = field(record, "answer", str, where)
        if answer in options and options[answer] != gold_text:
            # The file carries the gold twice; if they disagree the file is not the published one.
            raise UpstreamFormatError(f"{where}: answer {gold_text!r} is not the text of option {answer}")
        subject = field(record, "meta_info", str, where)
        items.append(make_item({
            "id": f"{line:04d}",
            "dataset": spec.name,
            "language": spec.language,
            "question": field(record, "question", str, where),
            "options": [{"label": label, "text": text} for label, text in options.items()],
            "answer": answer,
            "subject": subject,
            "source": f"{path.name}:{line}",
        }, where))
    return Converted(items)
