"""Metrics over outcome records, per cell (dataset x perturbation x prompt x mode) with n and a 95% CI.

A `*` in a cell means "over all": `prompt="*"` aggregates every prompt of that mode; worst-case
accuracy uses `perturbation="*"`. Definitions (see also README):

- accuracy: share correct (generate mode: the strictly parsed JSON answer is the gold label).
- lenient_accuracy (generate): the leniently extracted answer is the gold label.
- compliance (generate): the whole output is one JSON object valid against answer.schema.json.
- stability (perturbed cells): share of items whose chosen option, mapped back to the published
  item, is the same as on the unperturbed item under the same prompt and mode. For `gold_to_nota`
  the NOTA option stands in the gold option's slot, so choosing NOTA where the original chose the
  gold (or the same wrong option in both) is stable. Items without an answer in either are unstable.
- flip_rate (perturbed cells): among items correct on the original, the share wrong when perturbed.
- worst_case_accuracy: share of items correct under every perturbation run (original included).
- prompt_agreement: share of items for which every prompt of the mode chose the same option.
- crosslingual_agreement: for English/Spanish twins (pair_id), the share answered with the same option
  under the same perturbation, prompt and mode; its dataset is "<en>|<es>".

Every metric is computed once, as per-unit outcomes (the case, item or twin pair each value counts,
and whether it succeeded): a cell's value, n and interval are their sum, and a paired comparison of
two runs (medgate.compare) pairs the same units. flip_rate's units count in its denominator only
when the item was right on the original, so it is a ratio of counts rather than a proportion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from typing import Any

from medgate.stats import wilson_interval

ALL = "*"
ORIGINAL = "original"
Record = dict[str, Any]
Cell = tuple[str, str, str, str, str]  # metric, dataset, perturbation, prompt, mode
Combo = tuple[str, str, str, str]  # dataset, perturbation, prompt, mode: one block of cases
Unit = tuple[str, ...]
Ratio = tuple[int, int]  # numerator, denominator


@dataclass(frozen=True)
class MetricValue:
    name: str
    dataset: str
    perturbation: str
    prompt: str
    mode: str
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    successes: int

    @property
    def cell(self) -> tuple[str, str, str, str, str]:
        return self.name, self.dataset, self.perturbation, self.prompt, self.mode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def proportion(name: str, dataset: str, perturbation: str, prompt: str, mode: str,
               flags: Sequence[bool]) -> MetricValue:
    n, successes = len(flags), sum(bool(flag) for flag in flags)
    if n == 0:
        return MetricValue(name, dataset, perturbation, prompt, mode, None, 0, None, None, 0)
    low, high = wilson_interval(successes, n)
    return MetricValue(name, dataset, perturbation, prompt, mode, successes / n, n, round(low, 6),
                       round(high, 6), successes)


@dataclass
class CellUnits:
    """The units of one metric cell and the blocks of cases (combos) its value depends on."""

    cell: Cell
    units: dict[Unit, Ratio] = field(default_factory=dict)
    combos: set[Combo] = field(default_factory=set)
    prompts: set[str] = field(default_factory=set)

    def add(self, unit: Unit, ratio: Ratio, prompt: str, *combos: Combo) -> None:
        self.units[unit] = ratio
        self.prompts.add(prompt)
        self.combos.update(combos)

    @property
    def redundant(self) -> bool:
        """A `*` aggregate over a single prompt repeats that prompt's cell unit for unit."""
        metric, _, _, prompt, _ = self.cell
        return prompt == ALL and metric != "prompt_agreement" and len(self.prompts - {ALL}) <= 1

    @property
    def n(self) -> int:
        return sum(den for _, den in self.units.values())

    @property
    def value(self) -> float | None:
        n = self.n
        return sum(num for num, _ in self.units.values()) / n if n else None


class _Cells(dict[Cell, CellUnits]):
    def at(self, cell: Cell) -> CellUnits:
        found = self.get(cell)
        if found is None:
            found = self[cell] = CellUnits(cell)
        return found


def combo_of(record: Record) -> Combo:
    return record["dataset"], record["perturbation"], record["prompt"], record["mode"]


def case_unit(record: Record) -> Unit:
    return record["dataset"], record["item_id"], record["perturbation"], record["prompt"], record["mode"]


def unit_outcomes(records: Sequence[Record]) -> dict[Cell, CellUnits]:
    usable = [r for r in records if not r.get("non_finite")]
    cells = _Cells()
    _per_case(usable, cells)
    _stability(usable, cells)
    _worst_case(usable, cells)
    _prompt_agreement(usable, cells)
    _crosslingual(usable, cells)
    return dict(cells)


def _flag(value: Any) -> Ratio:
    return (1 if value else 0), 1


def _per_case(records: Iterable[Record], cells: _Cells) -> None:
    # The hot loop of a comparison (once per case and cell): it fills the units directly.
    for r in records:
        combo, unit, generate = combo_of(r), case_unit(r), r["mode"] == "generate"
        flags = [("accuracy", _flag(r["correct"]))]
        if generate:
            flags += [("lenient_accuracy", _flag(r.get("lenient_correct", False))),
                      ("compliance", _flag(r.get("schema_valid", False)))]
        for prompt in (r["prompt"], ALL):
            for metric, ratio in flags:
                target = cells.at((metric, r["dataset"], r["perturbation"], prompt, r["mode"]))
                target.units[unit] = ratio
                target.prompts.add(r["prompt"])
                target.combos.add(combo)


def _stability(records: Sequence[Record], cells: _Cells) -> None:
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
            cells.at(("stability", *place)).add(unit, _flag(same), r["prompt"], *combos)
            cells.at(("flip_rate", *place)).add(unit, (int(flipped), int(bool(base["correct"]))), r["prompt"],
                                                *combos)


def _group(records: Iterable[Record], *keys: str) -> dict[tuple[Any, ...], list[Record]]:
    groups: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    key_of = itemgetter(*keys)
    for record in records:
        key = key_of(record)
        groups[key if len(keys) > 1 else (key,)].append(record)
    return groups


def _worst_case(records: Sequence[Record], cells: _Cells) -> None:
    by_item = _group(records, "dataset", "mode", "prompt", "item_id")
    for (dataset, mode), group in sorted(_group(records, "dataset", "mode").items()):
        expected = {r["perturbation"] for r in group}
        if len(expected) < 2:
            continue
        prompts = sorted({r["prompt"] for r in group})
        item_ids = sorted({r["item_id"] for r in group})
        for prompt in prompts + [ALL]:
            target = cells.at(("worst_case_accuracy", dataset, ALL, prompt, mode))
            for item_id in item_ids:
                cases: list[Record] = []
                for chosen in (prompts if prompt == ALL else [prompt]):
                    cases += by_item.get((dataset, mode, chosen, item_id), [])
                if {r["perturbation"] for r in cases} == expected:
                    target.add((dataset, item_id, prompt, mode), _flag(all(r["correct"] for r in cases)), prompt,
                               *(combo_of(r) for r in cases))
            if prompt == ALL:
                target.prompts.update(prompts)
                target.prompts.discard(ALL)


def _prompt_agreement(records: Sequence[Record], cells: _Cells) -> None:
    for (dataset, perturbation, mode), group in sorted(_group(records, "dataset", "perturbation", "mode").items()):
        prompts = {r["prompt"] for r in group}
        if len(prompts) < 2:
            continue
        target = cells.at(("prompt_agreement", dataset, perturbation, ALL, mode))
        for (item_id,), answers in sorted(_group(group, "item_id").items()):
            if {r["prompt"] for r in answers} != prompts:
                continue
            chosen = {r["predicted_origin"] for r in answers}
            target.add((dataset, item_id, perturbation, mode), _flag(len(chosen) == 1 and None not in chosen),
                       ALL, *(combo_of(r) for r in answers))
        target.prompts.update(prompts)


def _crosslingual(records: Sequence[Record], cells: _Cells) -> None:
    paired = [r for r in records if r.get("pair_id")]
    for (pair_id, perturbation, prompt, mode), group in sorted(
            _group(paired, "pair_id", "perturbation", "prompt", "mode").items()):
        english = [r for r in group if r["language"] == "en"]
        spanish = [r for r in group if r["language"] == "es"]
        if len(english) != 1 or len(spanish) != 1:
            continue
        en, es = english[0], spanish[0]
        same = en["predicted_origin"] is not None and en["predicted_origin"] == es["predicted_origin"]
        dataset = f"{en['dataset']}|{es['dataset']}"
        for place_prompt in (prompt, ALL):
            cells.at(("crosslingual_agreement", dataset, perturbation, place_prompt, mode)).add(
                (pair_id, perturbation, prompt, mode), _flag(same), prompt, combo_of(en), combo_of(es))



def compute_metrics(records: Sequence[Record]) -> list[MetricValue]:
    """Every metric cell of the run, in a stable order (metric, dataset, perturbation, prompt, mode)."""
    values = []
    for cell, units in sorted(unit_outcomes(records).items()):
        successes, n = sum(num for num, _ in units.units.values()), units.n
        if n == 0:
            values.append(MetricValue(*cell, None, 0, None, None, 0))
            continue
        low, high = wilson_interval(successes, n)
        values.append(MetricValue(*cell, successes / n, n, round(low, 6), round(high, 6), successes))
    return values


def index_metrics(values: Iterable[MetricValue]) -> dict[tuple[str, str, str, str, str], MetricValue]:
    return {value.cell: value for value in values}
