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

from medgate.metrics.records import CaseRecord, TwinPair
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


def usable(records: Iterable[CaseRecord]) -> list[CaseRecord]:
    """Cases whose scores were not NaN or infinite: the others count in no metric."""
    return [r for r in records if not r.get("non_finite")]


def flag(value: object) -> Ratio:
    return (1 if value else 0), 1


def group(records: Iterable[CaseRecord], *keys: str) -> dict[tuple[Any, ...], list[CaseRecord]]:
    groups: dict[tuple[Any, ...], list[CaseRecord]] = defaultdict(list)
    key_of: Callable[[CaseRecord], Any] = itemgetter(*keys)
    for record in records:
        key = key_of(record)
        groups[key if len(keys) > 1 else (key,)].append(record)
    return groups


def each_prompt_and_all(block: Sequence[CaseRecord]) -> list[tuple[str, list[CaseRecord]]]:
    """A block's cases under each of its prompts, in order, then all of them under `*`."""
    by_prompt = group(block, "prompt")
    return [*((prompt, cases) for (prompt,), cases in sorted(by_prompt.items())), (ALL, list(block))]


def per_case(records: Sequence[CaseRecord], cells: Cells) -> None:
    """accuracy, and in generate mode lenient_accuracy and compliance: one unit per case."""
    # The hot loop of a comparison (once per case and cell): it fills the units directly.
    for r in records:
        combo, unit, generate = combo_of(r), case_unit(r), r["mode"] == "generate"
        flags = [("accuracy", flag(r["correct"]))]
        if generate:
            flags += [("lenient_accuracy", flag(r.get("lenient_correct", False))),
                      ("compliance", flag(r.get("schema_valid", False)))]
        for prompt in (r["prompt"], ALL):
            for metric, ratio in flags:
                target = cells.at((metric, r["dataset"], r["perturbation"], prompt, r["mode"]))
                target.units[unit] = ratio
                target.prompts.add(r["prompt"])
                target.combos.add(combo)


def against_original(records: Sequence[CaseRecord], cells: Cells) -> None:
    """stability and flip_rate: each perturbed case against the same item's original case."""
    originals = {(r["dataset"], r["item_id"], r["prompt"], r["mode"]): r for r in records
                 if r["perturbation"] == ORIGINAL}
    for r in records:
        if r["perturbation"] == ORIGINAL:
            continue
        base = originals.get((r["dataset"], r["item_id"], r["prompt"], r["mode"]))
        if base is None:
            continue
        same = base["predicted_origin"] is not None and base["predicted_origin"] == r["predicted_origin"]
        flipped = bool(base["correct"]) and not r["correct"]
        unit, combos = case_unit(r), (combo_of(r), combo_of(base))
        for prompt in (r["prompt"], ALL):
            place = (r["dataset"], r["perturbation"], prompt, r["mode"])
            cells.at(("stability", *place)).add(unit, flag(same), r["prompt"], *combos)
            cells.at(("flip_rate", *place)).add(unit, (int(flipped), int(bool(base["correct"]))), r["prompt"],
                                                *combos)


def per_item_across_perturbations(metric: str, records: Sequence[CaseRecord], cells: Cells,
                                  chosen: Callable[[str], bool], outcome: Callable[[list[CaseRecord]], bool | None],
                                  perturbation: str = ALL, pool_prompts: bool = True) -> None:
    """One unit per item and prompt: `outcome` of its cases under every `chosen` perturbation that ran.

    An item counts only where it ran under each of them (the same set as the other items of its
    dataset and mode). The `*` prompt cell pools the per-prompt units (pool_prompts) or, as
    worst-case accuracy does, asks the outcome of the item's cases under every prompt together.
    """
    selected = [r for r in records if chosen(r["perturbation"])]
    by_item = group(selected, "dataset", "mode", "prompt", "item_id")
    for (dataset, mode), block in sorted(group(selected, "dataset", "mode").items()):
        expected = {r["perturbation"] for r in block}
        if len(expected) < 2:
            continue
        prompts = sorted({r["prompt"] for r in block})
        item_ids = sorted({r["item_id"] for r in block})
        total = cells.at((metric, dataset, perturbation, ALL, mode))
        for prompt in prompts:
            target = cells.at((metric, dataset, perturbation, prompt, mode))
            for item_id in item_ids:
                cases = by_item.get((dataset, mode, prompt, item_id), [])
                if {r["perturbation"] for r in cases} != expected:
                    continue
                result = outcome(cases)
                if result is None:
                    continue
                combos = [combo_of(r) for r in cases]
                target.add((dataset, item_id, prompt, mode), flag(result), prompt, *combos)
                if pool_prompts:
                    total.add((dataset, item_id, prompt, mode), flag(result), prompt, *combos)
        if not pool_prompts:
            for item_id in item_ids:
                cases = [r for prompt in prompts for r in by_item.get((dataset, mode, prompt, item_id), [])]
                if {r["perturbation"] for r in cases} == expected:
                    total.add((dataset, item_id, ALL, mode), flag(all(r["correct"] for r in cases)), ALL,
                              *(combo_of(r) for r in cases))
        total.prompts.update(prompts)
        total.prompts.discard(ALL)


def worst_case(records: Sequence[CaseRecord], cells: Cells) -> None:
    per_item_across_perturbations("worst_case_accuracy", records, cells, lambda _: True,
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


def crosslingual(records: Sequence[CaseRecord], cells: Cells) -> None:
    paired = [r for r in records if r.get("pair_id")]
    for (pair_id, perturbation, prompt, mode), twins in sorted(
            group(paired, "pair_id", "perturbation", "prompt", "mode").items()):
        english = [r for r in twins if r["language"] == "en"]
        spanish = [r for r in twins if r["language"] == "es"]
        if len(english) != 1 or len(spanish) != 1:
            continue
        en, es = english[0], spanish[0]
        same = en["predicted_origin"] is not None and en["predicted_origin"] == es["predicted_origin"]
        dataset = TwinPair.of((en, es)).name
        for place_prompt in (prompt, ALL):
            cells.at(("crosslingual_agreement", dataset, perturbation, place_prompt, mode)).add(
                (pair_id, perturbation, prompt, mode), flag(same), prompt, combo_of(en), combo_of(es))
