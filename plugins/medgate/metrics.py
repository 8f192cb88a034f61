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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from medgate.stats import wilson_interval

ALL = "*"
ORIGINAL = "original"
Record = dict[str, Any]


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


def _group(records: Iterable[Record], *keys: str) -> dict[tuple[Any, ...], list[Record]]:
    groups: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    for record in records:
        groups[tuple(record[key] for key in keys)].append(record)
    return groups


def compute_metrics(records: Sequence[Record]) -> list[MetricValue]:
    usable = [r for r in records if not r.get("non_finite")]
    values: list[MetricValue] = []
    values += _per_cell(usable)
    values += _stability(usable)
    values += _worst_case(usable)
    values += _prompt_agreement(usable)
    values += _crosslingual(usable)
    return values


def _per_cell(records: Sequence[Record]) -> list[MetricValue]:
    values = []
    cells = _group(records, "dataset", "perturbation", "prompt", "mode")
    aggregated = _group(records, "dataset", "perturbation", "mode")
    keyed = [((d, p, pr, m), rs) for (d, p, pr, m), rs in sorted(cells.items())]
    keyed += [((d, p, ALL, m), rs) for (d, p, m), rs in sorted(aggregated.items())]
    for (dataset, perturbation, prompt, mode), group in keyed:
        values.append(proportion("accuracy", dataset, perturbation, prompt, mode, [r["correct"] for r in group]))
        if mode == "generate":
            values.append(proportion("lenient_accuracy", dataset, perturbation, prompt, mode,
                                     [r.get("lenient_correct", False) for r in group]))
            values.append(proportion("compliance", dataset, perturbation, prompt, mode,
                                     [r.get("schema_valid", False) for r in group]))
    return values


def _originals(records: Sequence[Record]) -> dict[tuple[str, str, str, str], Record]:
    return {(r["dataset"], r["item_id"], r["prompt"], r["mode"]): r for r in records
            if r["perturbation"] == ORIGINAL}


def _stability(records: Sequence[Record]) -> list[MetricValue]:
    originals = _originals(records)
    stable: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    flips: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    for record in records:
        if record["perturbation"] == ORIGINAL:
            continue
        base = originals.get((record["dataset"], record["item_id"], record["prompt"], record["mode"]))
        if base is None:
            continue
        same = base["predicted_origin"] is not None and base["predicted_origin"] == record["predicted_origin"]
        for prompt in (record["prompt"], ALL):
            key = (record["dataset"], record["perturbation"], prompt, record["mode"])
            stable[key].append(same)
            if base["correct"]:
                flips[key].append(not record["correct"])
    values = [proportion("stability", *key, flags) for key, flags in sorted(stable.items())]
    values += [proportion("flip_rate", *key, flags) for key, flags in sorted(flips.items())]
    return values


def _worst_case(records: Sequence[Record]) -> list[MetricValue]:
    by_item = _group(records, "dataset", "mode", "prompt", "item_id")
    perturbations = _group(records, "dataset", "mode")
    values = []
    for (dataset, mode), group in sorted(perturbations.items()):
        expected = {r["perturbation"] for r in group}
        if len(expected) < 2:
            continue
        prompts = sorted({r["prompt"] for r in group})
        for prompt in prompts + [ALL]:
            flags = []
            item_ids = sorted({r["item_id"] for r in group})
            for item_id in item_ids:
                cases = []
                for chosen in (prompts if prompt == ALL else [prompt]):
                    cases += by_item.get((dataset, mode, chosen, item_id), [])
                if {r["perturbation"] for r in cases} == expected:
                    flags.append(all(r["correct"] for r in cases))
            values.append(proportion("worst_case_accuracy", dataset, ALL, prompt, mode, flags))
    return values


def _prompt_agreement(records: Sequence[Record]) -> list[MetricValue]:
    values = []
    for (dataset, perturbation, mode), group in sorted(_group(records, "dataset", "perturbation", "mode").items()):
        prompts = {r["prompt"] for r in group}
        if len(prompts) < 2:
            continue
        flags = []
        for _, answers in sorted(_group(group, "item_id").items()):
            if {r["prompt"] for r in answers} != prompts:
                continue
            chosen = {r["predicted_origin"] for r in answers}
            flags.append(len(chosen) == 1 and None not in chosen)
        values.append(proportion("prompt_agreement", dataset, perturbation, ALL, mode, flags))
    return values


def _crosslingual(records: Sequence[Record]) -> list[MetricValue]:
    paired = [r for r in records if r.get("pair_id")]
    by_pair = _group(paired, "pair_id", "perturbation", "prompt", "mode")
    cells: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    for (_, perturbation, prompt, mode), group in sorted(by_pair.items()):
        english = [r for r in group if r["language"] == "en"]
        spanish = [r for r in group if r["language"] == "es"]
        if len(english) != 1 or len(spanish) != 1:
            continue
        en, es = english[0], spanish[0]
        same = en["predicted_origin"] is not None and en["predicted_origin"] == es["predicted_origin"]
        dataset = f"{en['dataset']}|{es['dataset']}"
        cells[(dataset, perturbation, prompt, mode)].append(same)
        cells[(dataset, perturbation, ALL, mode)].append(same)
    return [proportion("crosslingual_agreement", *key, flags) for key, flags in sorted(cells.items())]


def index_metrics(values: Iterable[MetricValue]) -> dict[tuple[str, str, str, str, str], MetricValue]:
    return {value.cell: value for value in values}
