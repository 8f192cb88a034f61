"""Metrics counted per unit (a case, an item or a twin pair, each a success or not).

Every such metric is computed once, as per-unit outcomes: a cell's value, n and interval are their
sum, and a paired comparison of two runs (medgate.compare) pairs the same units. flip_rate's units
count in its denominator only when the item was right on the original, so it is a ratio of counts
rather than a proportion.

A `*` prompt aggregates every prompt of the mode; a `*` perturbation reads every perturbation run.
The definitions are in the catalogue (catalogue.py) and the README.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from medgate.metrics.records import CaseRecord
from medgate.metrics.values import ALL, ORIGINAL, Cell, Combo, Ratio, Unit


@dataclass
class CellUnits:
    """The units of one metric cell and the blocks of cases (combos) its value depends on."""

    cell: Cell
    units: dict[Unit, Ratio] = field(default_factory=dict)
    combos: set[Combo] = field(default_factory=set)
    prompts: set[str] = field(default_factory=set)
    across_prompts: bool = False  # the metric compares prompts: its `*` cell is never a repeat

    def add(self, unit: Unit, ratio: Ratio, prompt: str, *combos: Combo) -> None:
        self.units[unit] = ratio
        self.prompts.add(prompt)
        self.combos.update(combos)

    @property
    def redundant(self) -> bool:
        """A `*` aggregate over a single prompt repeats that prompt's cell unit for unit."""
        prompt = self.cell[3]
        return prompt == ALL and not self.across_prompts and len(self.prompts - {ALL}) <= 1

    @property
    def n(self) -> int:
        return sum(den for _, den in self.units.values())

    @property
    def successes(self) -> int:
        return sum(num for num, _ in self.units.values())

    @property
    def value(self) -> float | None:
        n = self.n
        return self.successes / n if n else None


class Cells(dict[Cell, CellUnits]):
    def at(self, cell: Cell) -> CellUnits:
        found = self.get(cell)
        if found is None:
            found = self[cell] = CellUnits(cell)
        return found


UnitComputation = Callable[[Sequence[CaseRecord], Cells], None]


def combo_of(record: CaseRecord) -> Combo:
    return record["dataset"], record["perturbation"], record["prompt"], record["mode"]


def case_unit(record: CaseRecord) -> Unit:
    return record["dataset"], record["item_id"], record["perturbation"], record["prompt"], record["mode"]


Groups = dict[tuple[Any, ...], list[CaseRecord]]


class UsableCases(list[CaseRecord]):
    """The usable cases of a run, which every computation reads: grouping them by the same fields
    is done once and shared (a 50,000-case comparison spent a fifth of its time regrouping).
    Nothing may change the list, or the groups handed out, once they are grouped."""

    def __init__(self, records: Iterable[CaseRecord]) -> None:
        super().__init__(records)
        self.groups: dict[tuple[str, ...], Groups] = {}


def usable(records: Iterable[CaseRecord]) -> UsableCases:
    """Cases whose scores were not NaN or infinite: the others count in no metric."""
    if isinstance(records, UsableCases):
        return records
    return UsableCases(r for r in records if not r.get("non_finite"))


def flag(value: object) -> Ratio:
    return (1 if value else 0), 1


def group(records: Iterable[CaseRecord], *keys: str) -> Groups:
    """The records by the values of `keys`, in the order of their first record; shared where the
    records are a run's UsableCases, so callers only read the groups."""
    if isinstance(records, UsableCases):
        found = records.groups.get(keys)
        if found is None:
            found = records.groups[keys] = _group(records, keys)
        return found
    return _group(records, keys)


def _group(records: Iterable[CaseRecord], keys: tuple[str, ...]) -> Groups:
    groups: Groups = defaultdict(list)
    key_of: Callable[[CaseRecord], Any] = itemgetter(*keys)
    if len(keys) > 1:
        for record in records:
            groups[key_of(record)].append(record)
    else:
        for record in records:
            groups[(key_of(record),)].append(record)
    return dict(groups)  # a plain dict: a reader's missing key must not add a group to a shared grouping


def each_prompt_and_all(block: Sequence[CaseRecord]) -> list[tuple[str, list[CaseRecord]]]:
    """A block's cases under each of its prompts, in order, then all of them under `*`."""
    by_prompt = group(block, "prompt")
    return [*((prompt, cases) for (prompt,), cases in sorted(by_prompt.items())), (ALL, list(block))]


GENERATE_FLAGS = (("accuracy", "correct"), ("lenient_accuracy", "lenient_correct"), ("compliance", "schema_valid"))


def per_case(records: Sequence[CaseRecord], cells: Cells) -> None:
    """accuracy, and in generate mode lenient_accuracy and compliance: one unit per case."""
    # The hot loop of a comparison: its cases block by block (one combo each), so that a block's
    # cells are looked up once and filled in bulk.
    for combo, block in group(records, "dataset", "perturbation", "prompt", "mode").items():
        dataset, perturbation, prompt, mode = combo
        units = [case_unit(r) for r in block]
        flags = GENERATE_FLAGS if mode == "generate" else GENERATE_FLAGS[:1]
        for metric, name in flags:
            # `correct` is required of every case; the generate-mode fields may be absent (False).
            ratios = [flag(r["correct"]) for r in block] if name == "correct" else \
                [flag(r.get(name, False)) for r in block]
            for place_prompt in (prompt, ALL):
                target = cells.at((metric, dataset, perturbation, place_prompt, mode))
                target.units.update(zip(units, ratios))
                target.prompts.add(prompt)
                target.combos.add(combo)


def against_original(records: Sequence[CaseRecord], cells: Cells) -> None:
    """stability and flip_rate: each perturbed case against the same item's original case."""
    blocks = group(records, "dataset", "perturbation", "prompt", "mode")
    for combo, block in blocks.items():
        dataset, perturbation, prompt, mode = combo
        if perturbation == ORIGINAL:
            continue
        base_combo = (dataset, ORIGINAL, prompt, mode)
        # The last original of an item wins, as a dict of every original would keep it.
        originals = {r["item_id"]: r for r in blocks.get(base_combo, ())}
        stable: dict[Unit, Ratio] = {}
        flips: dict[Unit, Ratio] = {}
        for r in block:
            base = originals.get(r["item_id"])
            if base is None:
                continue
            same = base["predicted_origin"] is not None and base["predicted_origin"] == r["predicted_origin"]
            right_before = bool(base["correct"])
            unit = case_unit(r)
            stable[unit] = flag(same)
            flips[unit] = (int(right_before and not r["correct"]), int(right_before))
        if not stable:
            continue
        for place_prompt in (prompt, ALL):
            place = (dataset, perturbation, place_prompt, mode)
            for metric, units in (("stability", stable), ("flip_rate", flips)):
                target = cells.at((metric, *place))
                target.units.update(units)
                target.prompts.add(prompt)
                target.combos.update((combo, base_combo))


def per_item_across_perturbations(metric: str, records: Sequence[CaseRecord], cells: Cells,
                                  chosen: Callable[[str], bool] | None,
                                  outcome: Callable[[list[CaseRecord]], bool | None],
                                  perturbation: str = ALL, pool_prompts: bool = True) -> None:
    """One unit per item and prompt: `outcome` of its cases under every `chosen` perturbation that ran
    (None: every perturbation).

    An item counts only where it ran under each of them (the same set as the other items of its
    dataset and mode). The `*` prompt cell pools the per-prompt units (pool_prompts) or, as
    worst-case accuracy does, asks the outcome of the item's cases under every prompt together.
    """
    # Every perturbation: the run's own cases, whose groupings the other metrics share.
    selected = records if chosen is None else [r for r in records if chosen(r["perturbation"])]
    blocks = sorted(group(selected, "dataset", "mode").items())
    expected_of = {place: {r["perturbation"] for r in block} for place, block in blocks}
    if all(len(expected) < 2 for expected in expected_of.values()):
        return  # nothing to count: spare the per-item grouping (circular accuracy without rotations)
    by_item = group(selected, "dataset", "mode", "prompt", "item_id")
    for (dataset, mode), block in blocks:
        expected = expected_of[(dataset, mode)]
        if len(expected) < 2:
            continue
        prompts = sorted({r["prompt"] for r in block})
        item_ids = sorted({r["item_id"] for r in block})
        total = cells.at((metric, dataset, perturbation, ALL, mode))
        for prompt in prompts:
            target = cells.at((metric, dataset, perturbation, prompt, mode))
            counted = False
            for item_id in item_ids:
                cases = by_item.get((dataset, mode, prompt, item_id), [])
                if {r["perturbation"] for r in cases} != expected:
                    continue
                result = outcome(cases)
                if result is None:
                    continue
                counted = True
                target.units[(dataset, item_id, prompt, mode)] = flag(result)
                if pool_prompts:
                    total.units[(dataset, item_id, prompt, mode)] = flag(result)
            if counted:
                # A counted item ran under exactly `expected` here: these are its cases' combos.
                combos = {(dataset, ran, prompt, mode) for ran in expected}
                target.prompts.add(prompt)
                target.combos.update(combos)
                if pool_prompts:
                    total.prompts.add(prompt)
                    total.combos.update(combos)
        if not pool_prompts:
            for item_id in item_ids:
                cases = [r for prompt in prompts for r in by_item.get((dataset, mode, prompt, item_id), [])]
                if {r["perturbation"] for r in cases} != expected:
                    continue
                pooled = outcome(cases)  # the item's cases under every prompt together
                if pooled is not None:
                    total.add((dataset, item_id, ALL, mode), flag(pooled), ALL, *(combo_of(r) for r in cases))
        total.prompts.update(prompts)
        total.prompts.discard(ALL)


def worst_case(records: Sequence[CaseRecord], cells: Cells) -> None:
    per_item_across_perturbations("worst_case_accuracy", records, cells, None,
                                  lambda cases: all(r["correct"] for r in cases), pool_prompts=False)


def prompt_agreement(records: Sequence[CaseRecord], cells: Cells) -> None:
    for (dataset, perturbation, mode), block in sorted(group(records, "dataset", "perturbation", "mode").items()):
        prompts = {r["prompt"] for r in block}
        if len(prompts) < 2:
            continue
        target = cells.at(("prompt_agreement", dataset, perturbation, ALL, mode))
        target.across_prompts = True
        for (item_id,), answers in sorted(group(block, "item_id").items()):
            if {r["prompt"] for r in answers} != prompts:
                continue
            chosen = {r["predicted_origin"] for r in answers}
            target.add((dataset, item_id, perturbation, mode), flag(len(chosen) == 1 and None not in chosen),
                       ALL, *(combo_of(r) for r in answers))
        target.prompts.update(prompts)
