"""Which blocks of a run a metric's gates cover: one (dataset, perturbation, mode) per gate.

Threshold gates (medgate.gates) and regression gates (medgate.compare.regression) both ask
`blocks(scope, combos)`; a metric names its scope for each in the catalogue.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Literal

from medgate.metrics.records import TwinPair
from medgate.perturbations.answer_options import is_rotation
from medgate.metrics.values import ALL, ORIGINAL, Block, Combo

Scope = Literal[
    "original",  # each dataset and mode, on the unperturbed items
    "perturbed",  # each perturbation run other than `original`
    "every",  # each perturbation run, `original` included
    "prompts",  # each perturbation run under two prompts or more (the metric compares prompts)
    "across",  # each dataset and mode with two perturbations or more: one block over all of them (`*`)
    "circular",  # each dataset and mode where the `circular` rotations ran (`circular`)
    "pairs",  # each perturbation run on both twins of an English/Spanish pair (`<en>|<es>`)
]
CIRCULAR = "circular"  # the perturbation of a circular-accuracy cell: original and every rotation


def blocks(scope: Scope, combos: Iterable[Combo], mode: str | None = None) -> set[Block]:
    """The blocks `scope` covers among the run's (dataset, perturbation, prompt, mode) combinations;
    with `mode`, only that mode's (a generate-only metric)."""
    ran = {c for c in combos if mode is None or c[3] == mode}
    present = {(d, p, m) for d, p, _, m in ran}
    if scope == "original":
        return {b for b in present if b[1] == ORIGINAL}
    if scope == "perturbed":
        return {b for b in present if b[1] != ORIGINAL}
    if scope == "every":
        return present
    if scope == "prompts":
        prompts: dict[Block, set[str]] = defaultdict(set)
        for d, p, prompt, m in ran:
            prompts[(d, p, m)].add(prompt)
        return {b for b, names in prompts.items() if len(names) > 1}
    perturbations: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d, p, m in present:
        perturbations[(d, m)].add(p)
    if scope == "across":
        return {(d, ALL, m) for (d, m), names in perturbations.items() if len(names) > 1}
    if scope == "circular":
        return {(d, CIRCULAR, m) for (d, m), names in perturbations.items()
                if ORIGINAL in names and any(map(is_rotation, names))}
    if scope == "pairs":
        datasets = {d for d, _, _ in present}
        return {(pair.name, p, m) for pair in TwinPair.among(datasets) for d, p, m in present
                if d == pair.english and (pair.spanish, p, m) in present}
    raise ValueError(f"unknown scope {scope!r}")
