"""Cases: item x perturbation x prompt (x mode), their readable ids and their batch groups.

A group is the unit of batched prediction and of xdist scheduling: every case of a group runs on
the same worker, and the first one to run triggers one batched model call for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medgate.datasets import LoadedDataset
from medgate.items import Item
from medgate.perturbations import apply
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


def _chunks(count: int, size: int) -> list[range]:
    """Near-equal chunks of at most `size` (so 80 cases with size 64 make 40 + 40, not 64 + 16)."""
    parts = max(1, -(-count // size))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def expand_cases(datasets: Sequence[LoadedDataset], perturbations: Sequence[str], prompts: Sequence[str],
                 seed: int, group_size: int) -> list[Case]:
    library = prompt_library()
    cases: list[Case] = []
    for dataset in datasets:
        for perturbation in perturbations:
            presented = [(apply(perturbation, item, seed), item) for item in dataset.items]
            for prompt in prompts:
                by_language = library[prompt]
                mode = next(iter(by_language.values())).mode
                usable = [(shown, source) for shown, source in presented if shown.language in by_language]
                for chunk_number, chunk in enumerate(_chunks(len(usable), group_size)):
                    group = f"{dataset.name}:{perturbation}:{prompt}:{chunk_number}"
                    for index in chunk:
                        shown, source = usable[index]
                        cases.append(Case(dataset.name, shown, source, perturbation, prompt, mode, group))
    return cases
