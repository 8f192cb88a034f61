"""HEAD-QA v1.0 (Vilares and Gomez-Rodriguez), one JSON document per language and split.

Exams (`Cuaderno_<year>_1_<letter>`) hold questions with answers numbered by `aid`; labels A..
follow the aid order and the gold is the answer whose aid equals `ra`. Questions that refer to an
image are excluded (the images are not distributed with the text) and counted. The category
(medicine = the MIR exam, nursery, pharmacology, ...) is the subject. The Spanish original and the
English translation share exam and question ids, hence the `pair_id`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from medgate.datasets.converters.base import LABELS, Converted, single_path
from medgate.datasets.converters.upstream import field, make_item, read_json
from medgate.datasets.errors import UpstreamFormatError
from medgate.datasets.registry import DatasetSpec

IMAGE_REASON = "refers to an image"


def convert_headqa(spec: DatasetSpec, paths: list[Path]) -> Converted:
    path = single_path(spec, paths)
    document = read_json(path)
    language = field(document, "language", str, str(path))
    if language != spec.language:
        raise UpstreamFormatError(
            f"{path}: is the {language!r} HEAD-QA, dataset {spec.name!r} expects {spec.language!r}"
        )
    exams = field(document, "exams", dict, str(path))
    items = []
    excluded: Counter[str] = Counter()
    for exam_name, exam in exams.items():
        category = field(exam, "category", str, f"{path}: exam {exam_name}")
        for position, question in enumerate(field(exam, "data", list, f"{path}: exam {exam_name}"), start=1):
            qid = field(question, "qid", str, f"{path}: exam {exam_name} question #{position}")
            where = f"{path}: exam {exam_name} qid {qid}"
            if field(question, "image", str, where):
                excluded[IMAGE_REASON] += 1
                continue
            answers = sorted(field(question, "answers", list, where),
                             key=lambda a: field(a, "aid", int, where))
            if len(answers) > len(LABELS):
                raise UpstreamFormatError(f"{where}: {len(answers)} answers, at most {len(LABELS)} supported")
            gold = field(question, "ra", str, where)
            labels = {str(answer["aid"]): label for answer, label in zip(answers, LABELS)}
            if gold not in labels:
                raise UpstreamFormatError(f"{where}: ra {gold!r} is not among the answer ids "
                                          f"{sorted(labels)}")
            key = f"{exam_name}-{qid}"
            items.append(make_item({
                "id": key,
                "dataset": spec.name,
                "language": spec.language,
                "question": field(question, "qtext", str, where),
                "options": [{"label": label, "text": field(answer, "atext", str, where)}
                            for answer, label in zip(answers, LABELS)],
                "answer": labels[gold],
                "subject": category,
                "pair_id": f"headqa:{key}",
                "source": f"{path.name}:{exam_name}/{qid}",
            }, where))
    return Converted(items, dict(excluded))
