"""Registry and application of perturbations."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from medgate.items import Item

ORIGINAL = "original"


class PerturbationError(ValueError):
    pass


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    function: Callable[[Item, random.Random], Item]
    version: int = 1

    def definition(self) -> dict[str, object]:
        """What identifies this perturbation's behaviour in a report (for comparability checks)."""
        return {"name": self.name, "description": self.description, "version": self.version}


def _identity(item: Item, rng: random.Random) -> Item:
    return item


REGISTRY: dict[str, Perturbation] = {
    ORIGINAL: Perturbation(ORIGINAL, "The item as published.", _identity),
}


def register(perturbation: Perturbation) -> Perturbation:
    REGISTRY[perturbation.name] = perturbation
    return perturbation


def seeded_rng(item: Item, name: str, seed: int) -> random.Random:
    """From the item id, the perturbation name and the run seed; never Python's salted hash()."""
    material = f"{item.dataset}/{item.id}|{name}|{seed}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def get(name: str) -> Perturbation:
    if name not in REGISTRY:
        raise PerturbationError(f"unknown perturbation {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def apply(name: str, item: Item, seed: int) -> Item:
    perturbation = get(name)
    result = perturbation.function(item, seeded_rng(item, name, seed))
    if result is item:
        return item
    return replace(result, extras={**item.extras, **result.extras})


def resolve_set(spec: str) -> list[str]:
    """`none` (original only) or comma-separated names; `original` always comes first."""
    if spec in ("", "none", ORIGINAL):
        return [ORIGINAL]
    names = [part.strip() for part in spec.split(",") if part.strip()]
    for name in names:
        get(name)
    return [ORIGINAL] + [name for name in names if name != ORIGINAL]
