"""PubMedQA PQA-L (Jin et al.): ori_pqal.json records, restricted to the ids of a split file.

Each item is a 3-option question, A=yes, B=no, C=maybe, whose text is the abstract's contexts
followed by the question. LONG_ANSWER (the abstract's conclusion) and the reasoning_*_pred
annotations give the answer away and never reach an item. The item id is the PMID.
"""

from __future__ import annotations

from pathlib import Path

from medgate.datasets.converters.base import Converted, expect_paths
from medgate.datasets.converters.upstream import field, make_item, read_json
from medgate.datasets.errors import UpstreamFormatError
from medgate.datasets.registry import DatasetSpec

DECISIONS = {"yes": "A", "no": "B", "maybe": "C"}


def question_text(contexts: list[str], question: str) -> str:
    return "\n".join(contexts) + "\n\n" + question


def convert_pubmedqa(spec: DatasetSpec, paths: list[Path]) -> Converted:
    records_path, split_path = expect_paths(spec, paths, 2)
    records = read_json(records_path)
    split = read_json(split_path)
    if not isinstance(records, dict):
        raise UpstreamFormatError(f"{records_path}: expected an object keyed by PMID")
    if not isinstance(split, dict):
        raise UpstreamFormatError(f"{split_path}: expected an object {{PMID: yes|no|maybe}}")
    items = []
    for pmid, decision in split.items():
        where = f"{split_path}: PMID {pmid}"
        if decision not in DECISIONS:
            raise UpstreamFormatError(f"{where}: label {decision!r} is not one of {', '.join(DECISIONS)}")
        if pmid not in records:
            raise UpstreamFormatError(f"{where}: not in {records_path.name}")
        record = records[pmid]
        where = f"{records_path}: PMID {pmid}"
        contexts = field(record, "CONTEXTS", list, where)
        if not all(isinstance(c, str) for c in contexts):
            raise UpstreamFormatError(f"{where}: CONTEXTS should be a list of strings")
        published = field(record, "final_decision", str, where)
        if published != decision:
            raise UpstreamFormatError(
                f"{where}: final_decision {published!r} but {split_path.name} says {decision!r}"
            )
        items.append(make_item({
            "id": pmid,
            "dataset": spec.name,
            "language": spec.language,
            "question": question_text(contexts, field(record, "QUESTION", str, where)),
            "options": [{"label": label, "text": text} for text, label in DECISIONS.items()],
            "answer": DECISIONS[decision],
            "source": f"{records_path.name}:{pmid}",
        }, where))
    return Converted(items)
