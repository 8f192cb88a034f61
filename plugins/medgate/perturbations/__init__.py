"""Perturbations: small, pure, seeded functions from an item to a new item.

`original` is the identity. One module per family registers its steps (answer_options: order,
labels and "none of ..." options; stem: distractor sentence, typos, case and spacing); compose
builds and vets two-step `a+b`; catalog reads fixtures/perturbations.toml (named sets and the
texts perturbations insert); registry resolves names and --perturbations.
"""

from __future__ import annotations

from medgate.perturbations.base import ORIGINAL, REGISTRY, Perturbation, PerturbationError
from medgate.perturbations.compose import Composition
from medgate.perturbations.registry import apply, get, one_step_names, resolve_set

__all__ = ["ORIGINAL", "REGISTRY", "Composition", "Perturbation", "PerturbationError", "apply", "get",
           "one_step_names", "resolve_set"]
