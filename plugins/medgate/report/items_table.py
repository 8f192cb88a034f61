"""The report's items table: each item's question and options as presented, written once, not on every case.

A case's presentation is fixed by (dataset, item id, perturbation): every prompt of a block shows the same
question and options, so the 50,000-case synthetic report repeated each question five times. In memory every
case keeps its `question` and `options_presented` (the metrics and comparisons read them there); only the JSON
file moves them to `items`, keyed `dataset/item_id/perturbation`, and the reader puts them back. A case whose
presentation differs from its key's (two reports merged by hand, say) keeps its own inline: nothing is lost.
Schema 1.0 reports have no items table and every case carries its own question; both read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESENTED_FIELDS = ("question", "options_presented")
KEY_FIELDS = frozenset({"dataset", "item_id", "perturbation"})


def presented_key(case: Mapping[str, Any]) -> str:
    return f"{case['dataset']}/{case['item_id']}/{case['perturbation']}"


def is_report(document: Any) -> bool:
    return isinstance(document, dict) and isinstance(document.get("cases"), list) and "manifest" in document


def factored(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a report to serialise: the presentation of each item once in `items`, cases referring to it."""
    items: dict[str, dict[str, Any]] = {}
    cases = []
    for case in document["cases"]:
        if not all(field in case for field in PRESENTED_FIELDS):
            cases.append(case)
            continue
        key = presented_key(case)
        shown = items.setdefault(key, {field: case[field] for field in PRESENTED_FIELDS})
        if all(shown[field] == case[field] for field in PRESENTED_FIELDS):
            cases.append({k: v for k, v in case.items() if k not in PRESENTED_FIELDS})
        else:
            cases.append(case)
    out: dict[str, Any] = {}
    for key, value in document.items():
        if key == "cases":
            out["items"] = items
        out[key] = cases if key == "cases" else value
    return out


class ItemsTableError(ValueError):
    pass


def restore_presented(document: dict[str, Any]) -> dict[str, Any]:
    """Put each case's question and options back from `items` (in place); a case with its own keeps them."""
    items = document.pop("items", None)
    if items is None:
        return document
    if not isinstance(items, dict):
        raise ItemsTableError("`items` must be an object")
    for index, case in enumerate(document["cases"]):
        if not isinstance(case, dict) or "question" in case or not KEY_FIELDS <= case.keys():
            continue  # a case lacking its key fields: the reader's field check names it
        shown = items.get(presented_key(case))
        if not isinstance(shown, dict) or not all(field in shown for field in PRESENTED_FIELDS):
            raise ItemsTableError(f"cases[{index}] has no question and `items` has no {presented_key(case)!r}")
        for field in PRESENTED_FIELDS:
            case[field] = shown[field]
    return document
