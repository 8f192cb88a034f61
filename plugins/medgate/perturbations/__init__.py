"""Perturbations: small, pure, seeded functions from an item to a new item.

`original` is the identity. The perturbation families live in modules of this package and register
themselves in `REGISTRY`; sets of them are named in fixtures/perturbations.toml.
"""

from __future__ import annotations

from medgate.perturbations.base import REGISTRY, Perturbation, PerturbationError, apply, get, resolve_set

__all__ = ["REGISTRY", "Perturbation", "PerturbationError", "apply", "get", "resolve_set"]
