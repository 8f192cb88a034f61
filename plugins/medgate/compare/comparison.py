"""The paired comparison of two reports: per metric cell both values, the difference with a paired
bootstrap interval, an exact McNemar test with Holm's correction across every cell tested, and
the items that flipped.

Both runs are compared on the cases they share (the intersection); cases present in only one are
counted and listed. Blocks of cases that changed in more than the model (see compatibility.py)
make every cell that reads them incomparable.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medgate.compare.compatibility import incomparable_combos, index_cases, intersect
from medgate.compare.outcomes import PAIRED, Cell, CellUnits, Combo, Record, Statistic, combo_of, statistics, unit_outcomes
from medgate.metrics import ALL
from medgate.metrics.catalogue import CATALOGUE
from medgate.metrics.units import usable
from medgate.stats import holm_adjust, mcnemar_exact, paired_bootstrap_interval

CORRECT_TO_WRONG = "correct_to_wrong"
WRONG_TO_CORRECT = "wrong_to_correct"


@dataclass(frozen=True)
class CompareSettings:
    alpha: float = 0.05  # family-wise error rate for the Holm-corrected McNemar tests
    level: float = 0.95  # bootstrap interval coverage
    replicates: int = 2000
    seed: int = 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def run_header(document: Mapping[str, Any], path: str | None = None) -> dict[str, Any]:
    manifest = document.get("manifest") or {}
    model = manifest.get("model") or {}
    return {"run_id": document.get("run_id") or manifest.get("run_id"), "status": document.get("status"),
            "model": model.get("alias"), "fingerprint": model.get("fingerprint"), "path": path}


def headers(baseline: Mapping[str, Any], current: Mapping[str, Any], baseline_path: str | None = None,
            current_path: str | None = None) -> dict[str, Any]:
    """Which two runs were compared; refreshed at the end of a session, when the manifest is complete."""
    old, new = run_header(baseline, baseline_path), run_header(current, current_path)
    return {"baseline": old, "current": new,
            "same_checkpoint": bool(old["fingerprint"]) and old["fingerprint"] == new["fingerprint"]}


def _cell_seed(seed: int, cell: Cell) -> int:
    """Each cell draws from its own stream, so its interval does not depend on which other cells exist."""
    return seed * 2**32 + zlib.crc32("|".join(cell).encode("utf-8"))


def _compare_cell(cell: Cell, a: CellUnits, b: CellUnits, settings: CompareSettings) -> dict[str, Any]:
    # The units both runs have, counted as pairs of ratios (a few distinct ones) and spelled as
    # 4-tuples once per kind. Walking the baseline's units in their order and looking each up in the
    # current run is several times faster than intersecting the keys and building a tuple per unit,
    # which was the costliest line of a 50,000-case comparison; a unit only the baseline has pairs
    # with None and is left out.
    pairs = Counter(zip(a.units.values(), map(b.units.get, a.units)))
    kinds = Counter({(*old, *new): count for (old, new), count in pairs.items() if new is not None})
    common_units = sum(kinds.values())
    n_a = sum(count * kind[1] for kind, count in kinds.items())
    n_b = sum(count * kind[3] for kind, count in kinds.items())
    value_a = sum(count * kind[0] for kind, count in kinds.items()) / n_a if n_a else None
    value_b = sum(count * kind[2] for kind, count in kinds.items()) / n_b if n_b else None
    delta = value_b - value_a if value_a is not None and value_b is not None else None
    interval = paired_bootstrap_interval(kinds, settings.replicates, _cell_seed(settings.seed, cell),
                                         settings.level) if delta is not None else None
    worse = better = None
    p_value = None
    if cell[0] in PAIRED and common_units:
        worse = sum(count for kind, count in kinds.items() if kind[0] == 1 and kind[2] == 0)
        better = sum(count for kind, count in kinds.items() if kind[0] == 0 and kind[2] == 1)
        p_value = mcnemar_exact(worse, better)
    metric, dataset, perturbation, prompt, mode = cell
    return {
        "metric": metric, "dataset": dataset, "perturbation": perturbation, "prompt": prompt, "mode": mode,
        "comparable": True, "units": common_units, "n_baseline": n_a, "n_current": n_b,
        "baseline": _round(value_a), "current": _round(value_b), "delta": _round(delta),
        "ci_low": _round(interval[0]) if interval else None, "ci_high": _round(interval[1]) if interval else None,
        "worse": worse, "better": better, "p_value": p_value, "p_adjusted": None, "significant": False,
    }


def _repeats_one_prompt(statistic: Statistic) -> bool:
    """An all-prompt statistic over a single prompt is that prompt's cell again (as CellUnits.redundant)."""
    metric, _, _, prompt, _ = statistic.value.cell
    return prompt == ALL and not CATALOGUE[metric].across_prompts and len({c[2] for c in statistic.combos}) <= 1


def _compare_statistic(a: Statistic, b: Statistic) -> dict[str, Any]:
    """A statistic's two values on the shared cases: no units to pair, so no interval and no test."""
    old, new = a.value, b.value
    delta = new.value - old.value if old.value is not None and new.value is not None else None
    metric, dataset, perturbation, prompt, mode = new.cell
    return {
        "metric": metric, "dataset": dataset, "perturbation": perturbation, "prompt": prompt, "mode": mode,
        "comparable": True, "units": min(old.n, new.n), "n_baseline": old.n, "n_current": new.n,
        "baseline": _round(old.value), "current": _round(new.value), "delta": _round(delta),
        "ci_low": None, "ci_high": None, "worse": None, "better": None, "p_value": None, "p_adjusted": None,
        "significant": False,
    }


def _incomparable_cell(cell: Cell, reasons: list[str]) -> dict[str, Any]:
    metric, dataset, perturbation, prompt, mode = cell
    return {"metric": metric, "dataset": dataset, "perturbation": perturbation, "prompt": prompt, "mode": mode,
            "comparable": False, "reasons": reasons}


def _flips(pairs: Sequence[tuple[Record, Record]], blocked: Mapping[Combo, list[str]]) -> list[dict[str, Any]]:
    flips = []
    for old, new in pairs:
        if old.get("non_finite") or new.get("non_finite") or bool(old["correct"]) == bool(new["correct"]):
            continue
        if combo_of(new) in blocked:
            continue  # the item or prompt changed: a different answer is not the model's doing
        flips.append({
            "case_id": new["case_id"], "dataset": new["dataset"], "item_id": new["item_id"],
            "perturbation": new["perturbation"], "prompt": new["prompt"], "mode": new["mode"],
            "question": new["question"], "gold_label": new["gold_label"],
            "baseline_answer": old.get("predicted_label"), "current_answer": new.get("predicted_label"),
            "direction": CORRECT_TO_WRONG if old["correct"] else WRONG_TO_CORRECT,
        })
    return flips


def comparison_warnings(baseline: Mapping[str, Any], common: int) -> list[str]:
    """What makes a comparison weaker than it looks: a baseline that did not finish, or no shared case."""
    warnings = []
    status = baseline.get("status")
    if status in ("incomplete", "interrupted"):
        missing = len(baseline.get("missing_cases") or [])
        warnings.append(f"the baseline {baseline.get('run_id')} is {status} ({missing} case(s) without a result): "
                        "what it never answered is not compared")
    if not common:
        warnings.append("the baseline shares no case with this run: nothing was compared")
    return warnings


def compare_reports(baseline: Mapping[str, Any], current: Mapping[str, Any],
                    settings: CompareSettings = CompareSettings()) -> dict[str, Any]:
    """The `comparison` section of a report (schema: fixtures/schemas/report.schema.json)."""
    old_cases = index_cases(baseline["cases"], "baseline")
    new_cases = index_cases(current["cases"], "current")
    shared = intersect(old_cases, new_cases)
    pairs = [(old_cases[case_id], new_cases[case_id]) for case_id in shared.common]
    blocked = incomparable_combos(baseline.get("manifest") or {}, current.get("manifest") or {}, pairs)
    # Each side's usable cases once: the unit metrics and the statistics share their groupings.
    records_a, records_b = usable(old for old, _ in pairs), usable(new for _, new in pairs)
    units_a, units_b = unit_outcomes(records_a), unit_outcomes(records_b)

    cells: list[dict[str, Any]] = []
    for cell in sorted(units_a.keys() & units_b.keys()):
        a, b = units_a[cell], units_b[cell]
        if a.redundant and b.redundant:
            continue
        reasons = sorted({reason for combo in a.combos | b.combos for reason in blocked.get(combo, [])})
        cells.append(_incomparable_cell(cell, reasons) if reasons else _compare_cell(cell, a, b, settings))
    # Statistics are compared by their two values: their own intervals are not needed here.
    stats_a = {s.value.cell: s for s in statistics(records_a, intervals=False)}
    stats_b = {s.value.cell: s for s in statistics(records_b, intervals=False)}
    for cell in sorted(stats_a.keys() & stats_b.keys()):
        a_stat, b_stat = stats_a[cell], stats_b[cell]
        if _repeats_one_prompt(a_stat) and _repeats_one_prompt(b_stat):
            continue
        reasons = sorted({reason for combo in a_stat.combos | b_stat.combos for reason in blocked.get(combo, [])})
        cells.append(_incomparable_cell(cell, reasons) if reasons else _compare_statistic(a_stat, b_stat))

    tested = [c for c in cells if c.get("p_value") is not None]
    for entry, adjusted in zip(tested, holm_adjust([c["p_value"] for c in tested])):
        entry["p_adjusted"] = adjusted
        entry["significant"] = adjusted < settings.alpha

    flips = _flips(pairs, blocked)
    return {
        **headers(baseline, current),
        "warnings": comparison_warnings(baseline, len(shared.common)),
        "method": {
            "test": "exact McNemar (two-sided binomial on discordant pairs)",
            "correction": "holm", "alpha": settings.alpha, "cells_tested": len(tested),
            "interval": "paired percentile bootstrap", "level": settings.level,
            "replicates": settings.replicates, "seed": settings.seed,
        },
        "cases": {
            "common": len(shared.common),
            "only_in_baseline": shared.only_in_baseline,
            "only_in_current": shared.only_in_current,
        },
        "incomparable": [{"dataset": d, "perturbation": p, "prompt": pr, "mode": m, "reasons": reasons}
                         for (d, p, pr, m), reasons in sorted(blocked.items())],
        "cells": cells,
        "flips": {
            CORRECT_TO_WRONG: sum(1 for f in flips if f["direction"] == CORRECT_TO_WRONG),
            WRONG_TO_CORRECT: sum(1 for f in flips if f["direction"] == WRONG_TO_CORRECT),
            "items": flips,
        },
    }
