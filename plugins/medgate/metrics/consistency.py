"""Consistency (ReCon, ReMedQA): the share of items whose chosen published option is the same under
every perturbation run, right or wrong. Stability asks this of each perturbation against the
original; consistency asks it across all of them at once. An item without an answer in any case,
or that chose an inserted option (a NOTA distractor), is inconsistent.
"""

from __future__ import annotations

from collections.abc import Sequence

from medgate.metrics.records import CaseRecord
from medgate.metrics.units import Cells, per_item_across_perturbations


def _same_option_everywhere(cases: list[CaseRecord]) -> bool:
    chosen = {r["predicted_origin"] for r in cases}
    return len(chosen) == 1 and None not in chosen


def consistency(records: Sequence[CaseRecord], cells: Cells) -> None:
    per_item_across_perturbations("consistency", records, cells, None, _same_option_everywhere)
