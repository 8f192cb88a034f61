"""Circular accuracy (CircularEval, MMBench; Liu et al. 2023): an item counts as right only if it is
right under every cyclic rotation of its options, so that the gold stands in every position once.

The rotations are the perturbations `rotate_1` .. `rotate_N-1` (the `circular` set) beside
`original`; an item of N options counts where all N ran for it and prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

from medgate.metrics.records import CaseRecord
from medgate.metrics.scopes import CIRCULAR
from medgate.perturbations.answer_options import ROTATION_PREFIX, is_rotation
from medgate.metrics.units import Cells, per_item_across_perturbations
from medgate.metrics.values import ORIGINAL


def _right_under_every_rotation(cases: list[CaseRecord]) -> bool | None:
    original = next((r for r in cases if r["perturbation"] == ORIGINAL), None)
    options = original.get("options_presented") if original is not None else None
    if not options:
        return None
    needed = {ORIGINAL} | {f"{ROTATION_PREFIX}{k}" for k in range(1, len(options))}
    rotations = [r for r in cases if r["perturbation"] in needed]
    if {r["perturbation"] for r in rotations} != needed:
        return None  # not every rotation of this item ran (more options than the set rotates)
    return all(r["correct"] for r in rotations)


def circular_accuracy(records: Sequence[CaseRecord], cells: Cells) -> None:
    per_item_across_perturbations("circular_accuracy", records, cells,
                                  lambda name: name == ORIGINAL or is_rotation(name),
                                  _right_under_every_rotation, perturbation=CIRCULAR)
