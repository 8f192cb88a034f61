"""Cases: item x perturbation x prompt (x mode), their readable ids and their batch groups.

A group is the unit of batched prediction and of xdist scheduling: every case of a group runs on
the same worker, and the first one to run triggers one batched model call for all of them. A group
holds whole items under one prompt, every perturbation of each (so that the variants of an item,
which share most of their tokens, meet in one call: see backends/prefix_tree.py), and at most
`group_size` cases; an item with more variants than that is split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medgate.datasets import LoadedDataset
from medgate.items import Item
from medgate.perturbations import PerturbationError, apply
from medgate.prompts import prompt_library


@dataclass(frozen=True)
class Case:
    dataset: str
    item: Item  # as presented to the model (after the perturbation)
    source: Item  # as published
    perturbation: str
    prompt: str
    mode: str
    group: str

    @property
    def case_id(self) -> str:
        return f"{self.dataset}/{self.item.id}/{self.perturbation}/{self.prompt}"


def by_group(cases: Sequence[Case]) -> dict[str, list[Case]]:
    """Cases by group name, in the order their groups first appear (each group's cases in order)."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    return groups


def _chunks(count: int, size: int) -> list[range]:
    """Near-equal chunks of at most `size` (so 80 cases with size 64 make 40 + 40, not 64 + 16)."""
    parts = max(1, -(-count // size))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def expand_cases(datasets: Sequence[LoadedDataset], perturbations: Sequence[str], prompts: Sequence[str],
                 seed: int, group_size: int) -> list[Case]:
    """Cases in perturbation, prompt, item order; grouped by prompt and item (see the module's docstring)."""
    library = prompt_library()
    cases: list[Case] = []
    for dataset in datasets:
        # presented[p][i]: item i under perturbation p, beside its source
        presented = [[(_perturbed(perturbation, item, seed), item) for item in dataset.items]
                     for perturbation in perturbations]
        groups: dict[str, dict[tuple[int, int], str]] = {}
        for prompt in prompts:
            usable = [i for i, item in enumerate(dataset.items) if item.language in library[prompt]]
            groups[prompt] = _item_groups(dataset.name, prompt, usable, len(perturbations), group_size)
        for p_index, perturbation in enumerate(perturbations):
            for prompt in prompts:
                by_language = library[prompt]
                mode = next(iter(by_language.values())).mode
                for i, (shown, source) in enumerate(presented[p_index]):
                    if shown.language in by_language:
                        cases.append(Case(dataset.name, shown, source, perturbation, prompt, mode,
                                          groups[prompt][(i, p_index)]))
    return cases


def _perturbed(perturbation: str, item: Item, seed: int) -> Item:
    try:
        return apply(perturbation, item, seed)
    except PerturbationError as error:  # an item this perturbation cannot take: say which
        raise PerturbationError(f"{perturbation} on item {item.dataset}/{item.id}: {error}") from None


def _item_groups(dataset: str, prompt: str, items: Sequence[int], variants: int,
                 group_size: int) -> dict[tuple[int, int], str]:
    """(item, perturbation index) -> group name: whole items per group while their variants fit."""
    groups: dict[tuple[int, int], str] = {}
    if variants <= group_size:
        for number, chunk in enumerate(_chunks(len(items), max(1, group_size // variants))):
            for position in chunk:
                for variant in range(variants):
                    groups[(items[position], variant)] = f"{dataset}:{prompt}:{number}"
        return groups
    for item in items:
        for part, chunk in enumerate(_chunks(variants, group_size)):
            for variant in chunk:
                groups[(item, variant)] = f"{dataset}:{prompt}:{item}.{part}"
    return groups
