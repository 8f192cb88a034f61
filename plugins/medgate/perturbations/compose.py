"""Two-step perturbations: `a+b` applies a, then b; pairs that make no sense are declared and refused.

Each step is seeded with its own name, so `shuffle_options+typos` shows exactly the permutation of
`shuffle_options` with exactly the typos of `typos`: the extra drop is the second step's doing.
"""

from __future__ import annotations

from dataclasses import dataclass

from medgate.items import Item
from medgate.perturbations.answer_options import ORDER_ONLY
from medgate.perturbations.base import ORIGINAL, Perturbation, PerturbationError

SEPARATOR = "+"
COMPOSITION_VERSION = 1

REORDERINGS = ORDER_ONLY  # shuffle_options, reverse_options, gold_last, rotate_1 .. rotate_4
RELABELINGS = frozenset({"relabel_numeric", "relabel_roman"})
NOTA_OPTIONS = frozenset({"gold_to_nota", "add_nota_distractor"})


@dataclass(frozen=True)
class Incompatibility:
    """Refuse `first+second` for any first in `first` followed by any second in `second`."""

    first: frozenset[str]
    second: frozenset[str]
    reason: str


INCOMPATIBLE: tuple[Incompatibility, ...] = (
    Incompatibility(REORDERINGS, REORDERINGS,
                    "two reorderings: the second decides the final order and masks the first "
                    "(gold_last after a shuffle is gold_last; a reversed shuffle is a shuffle)"),
    Incompatibility(RELABELINGS, RELABELINGS, "two relabelings: only the second would be seen"),
    Incompatibility(NOTA_OPTIONS, NOTA_OPTIONS,
                    "two 'none of ...' options contradict each other (which one would be right?)"),
    Incompatibility(frozenset({"add_nota_distractor"}), REORDERINGS,
                    "'None of the above' must stay the last option: reorder first, e.g. "
                    "shuffle_options+add_nota_distractor"),
)


def incompatibility(first: str, second: str) -> str | None:
    """Why `first+second` is refused, or None if it is allowed."""
    if first == second:
        return "a perturbation composed with itself"
    for rule in INCOMPATIBLE:
        if first in rule.first and second in rule.second:
            return rule.reason
    return None


@dataclass(frozen=True)
class Composition:
    first: Perturbation
    second: Perturbation

    @property
    def name(self) -> str:
        return f"{self.first.name}{SEPARATOR}{self.second.name}"

    @property
    def description(self) -> str:
        return f"{self.first.name}, then {self.second.name}."

    @property
    def steps(self) -> tuple[Perturbation, ...]:
        return (self.first, self.second)

    def definition(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "version": COMPOSITION_VERSION,
                "steps": [self.first.definition(), self.second.definition()]}

    def apply(self, item: Item, seed: int) -> Item:
        return self.second.apply(self.first.apply(item, seed), seed)


def compose(first: Perturbation, second: Perturbation) -> Composition:
    name = f"{first.name}{SEPARATOR}{second.name}"
    if ORIGINAL in (first.name, second.name):
        raise PerturbationError(f"cannot compose {name}: {ORIGINAL!r} is not a step (it is always run)")
    reason = incompatibility(first.name, second.name)
    if reason is not None:
        raise PerturbationError(f"cannot compose {name}: {reason}")
    return Composition(first, second)
