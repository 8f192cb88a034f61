"""Which cases two reports share, and which blocks of cases may not be compared at all.

A difference in the model is what a comparison is for. Anything else that changes what the model
was asked makes a block of cases (dataset x perturbation x prompt x mode) incomparable: different
item content under the same id, a different prompt template, a perturbation defined differently or
drawn with another seed. Such blocks are reported with their reasons and never compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medgate.compare.outcomes import Combo, Record, combo_of
from medgate.metrics import ORIGINAL


@dataclass(frozen=True)
class Intersection:
    common: list[str]  # case ids present in both reports, in the current report's order
    only_in_baseline: list[str]
    only_in_current: list[str]


def index_cases(cases: Sequence[Record], which: str) -> dict[str, Record]:
    indexed: dict[str, Record] = {}
    for record in cases:
        case_id = record["case_id"]
        if case_id in indexed:
            raise ValueError(f"the {which} report lists case {case_id} twice")
        indexed[case_id] = record
    return indexed


def intersect(baseline: Mapping[str, Record], current: Mapping[str, Record]) -> Intersection:
    return Intersection(
        common=[case_id for case_id in current if case_id in baseline],
        only_in_baseline=[case_id for case_id in baseline if case_id not in current],
        only_in_current=[case_id for case_id in current if case_id not in baseline],
    )


def _definitions(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: dict(d) for d in manifest.get("perturbations") or [] if isinstance(d, dict) and "name" in d}


def _describe_change(name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> str | None:
    if before == after:
        return None
    if before is None or after is None:
        side = "baseline" if before is None else "current"
        return f"perturbation {name!r} has no recorded definition in the {side} report"
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    details = ", ".join(f"{key} {before.get(key)!r} -> {after.get(key)!r}" for key in changed)
    return f"perturbation {name!r} is defined differently ({details})"


def incomparable_combos(baseline_manifest: Mapping[str, Any], current_manifest: Mapping[str, Any],
                        pairs: Sequence[tuple[Record, Record]]) -> dict[Combo, list[str]]:
    """Reasons per combo of the shared cases; combos not listed are comparable."""
    before, after = _definitions(baseline_manifest), _definitions(current_manifest)
    seeds = baseline_manifest.get("seed"), current_manifest.get("seed")
    counts: dict[Combo, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    prompt_changes: dict[Combo, tuple[str, str]] = {}
    combos: set[Combo] = set()
    for old, new in pairs:
        combo = combo_of(new)
        combos.add(combo)
        if old.get("item_hash") != new.get("item_hash"):
            counts[combo]["item"].append(new["item_id"])
        elif old.get("question") != new.get("question") or old.get("options_presented") != new.get("options_presented"):
            counts[combo]["presented"].append(new["item_id"])
        if old.get("prompt_hash") != new.get("prompt_hash"):
            prompt_changes[combo] = (str(old.get("prompt_hash")), str(new.get("prompt_hash")))
    reasons: dict[Combo, list[str]] = defaultdict(list)
    for combo in sorted(combos):
        dataset, perturbation, prompt, mode = combo
        change = _describe_change(perturbation, before.get(perturbation), after.get(perturbation))
        if change:
            reasons[combo].append(change)
        if perturbation != ORIGINAL and seeds[0] != seeds[1]:
            reasons[combo].append(f"perturbations were drawn with seed {seeds[0]} in the baseline and {seeds[1]} now")
        if combo in prompt_changes:
            old_hash, new_hash = prompt_changes[combo]
            reasons[combo].append(f"prompt template {prompt!r} changed (hash {old_hash} -> {new_hash})")
        items = counts[combo]["item"] if combo in counts else []
        if items:
            reasons[combo].append(f"item content changed for {len(items)} item id(s), e.g. {', '.join(items[:3])}")
        presented = counts[combo]["presented"] if combo in counts else []
        if presented:
            reasons[combo].append(f"the presented question or options differ for {len(presented)} case(s), "
                                  f"e.g. item {presented[0]}")
    return dict(reasons)
