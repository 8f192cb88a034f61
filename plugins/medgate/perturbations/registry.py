"""Looking perturbations up by name (`typos`, `shuffle_options+typos`) and resolving --perturbations."""

from __future__ import annotations

from medgate.items import Item
from medgate.perturbations import answer_options, stem  # noqa: F401 - importing registers their steps
from medgate.perturbations.base import ORIGINAL, REGISTRY, Perturbation, PerturbationError
from medgate.perturbations.catalog import catalog
from medgate.perturbations.compose import SEPARATOR, Composition, compose

MAX_STEPS = 2


def one_step_names() -> list[str]:
    return [name for name in REGISTRY if name != ORIGINAL]


def _unknown(name: str) -> PerturbationError:
    return PerturbationError(
        f"unknown perturbation {name!r}; known: {', '.join(one_step_names())}; "
        f"sets: {', '.join(catalog().sets)}; compose two steps as a{SEPARATOR}b"
    )


def get(name: str) -> Perturbation | Composition:
    steps = name.split(SEPARATOR)
    if len(steps) > MAX_STEPS:
        raise PerturbationError(f"{name!r} has {len(steps)} steps; at most {MAX_STEPS} are supported")
    for step in steps:
        if step not in REGISTRY:
            raise _unknown(step)
    if len(steps) == 1:
        return REGISTRY[name]
    return compose(REGISTRY[steps[0]], REGISTRY[steps[1]])


def apply(name: str, item: Item, seed: int) -> Item:
    return get(name).apply(item, seed)


def resolve_set(spec: str) -> list[str]:
    """`none`, a set from fixtures/perturbations.toml, or comma-separated names, compositions and sets.

    The result starts with `original` (stability is measured against it) and has no repeats.
    """
    sets = catalog().sets
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "none", ORIGINAL):
            continue
        expanded = catalog().expand(part) if part in sets else [part]
        for name in expanded:
            try:
                get(name)
            except PerturbationError as error:
                where = f" (in set {part!r} of {catalog().path})" if part in sets else ""
                raise PerturbationError(f"{error}{where}") from None
            if name not in names and name != ORIGINAL:
                names.append(name)
    return [ORIGINAL, *names]
