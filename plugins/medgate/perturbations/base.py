"""What a perturbation is, how it is seeded, and the registry the family modules fill."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from medgate.items import Item

ORIGINAL = "original"


class PerturbationError(ValueError):
    pass


@dataclass(frozen=True)
class Perturbation:
    """One step: a pure function of the item and a generator seeded for this item and step.

    `uses` returns the fixture data the step reads (NOTA phrases, distractor sentences); it is
    hashed into `definition()`, so editing that data makes reports visibly incomparable.
    """

    name: str
    description: str
    function: Callable[[Item, random.Random], Item]
    version: int = 1
    uses: Callable[[], Any] | None = None

    @property
    def steps(self) -> tuple[Perturbation, ...]:
        return (self,)

    def data_sha256(self) -> str | None:
        if self.uses is None:
            return None
        text = json.dumps(self.uses(), ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def definition(self) -> dict[str, object]:
        """What identifies this perturbation's behaviour in a report (for comparability checks)."""
        definition: dict[str, object] = {"name": self.name, "description": self.description,
                                          "version": self.version}
        data = self.data_sha256()
        if data is not None:
            definition["data_sha256"] = data
        return definition

    def apply(self, item: Item, seed: int) -> Item:
        result = self.function(item, seeded_rng(item, self.name, seed))
        if result is item:
            return item
        return replace(result, extras={**item.extras, **result.extras})


def _identity(item: Item, rng: random.Random) -> Item:
    return item


REGISTRY: dict[str, Perturbation] = {
    ORIGINAL: Perturbation(ORIGINAL, "The item as published.", _identity),
}


def register(perturbation: Perturbation) -> Perturbation:
    if perturbation.name in REGISTRY:
        raise PerturbationError(f"perturbation {perturbation.name!r} is registered twice")
    if not perturbation.name.replace("_", "").isalnum():
        # Names appear in case ids and pytest ids, and `+` composes them.
        raise PerturbationError(f"perturbation name {perturbation.name!r} must be letters, digits and _")
    REGISTRY[perturbation.name] = perturbation
    return perturbation


def seeded_rng(item: Item, name: str, seed: int) -> random.Random:
    """From the item id, the perturbation name and the run seed; never Python's salted hash()."""
    material = f"{item.dataset}/{item.id}|{name}|{seed}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def origin_of(item: Item) -> tuple[int | None, ...]:
    """For each presented option, its index in the published item (None: inserted by a perturbation)."""
    origin = item.extras.get("origin")
    return tuple(range(len(item.options))) if origin is None else tuple(origin)
