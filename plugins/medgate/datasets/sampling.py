"""Reproducible selection: `--subset KEY=VALUE` filters and a seeded `--limit` stratified by subject."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from medgate.items import Item

SUBSET_KEYS = ("subject", "language", "id", "pair_id")


def parse_subset(expression: str) -> tuple[str, str]:
    key, separator, value = expression.partition("=")
    key, value = key.strip(), value.strip()
    if not separator or not value or key not in SUBSET_KEYS:
        raise ValueError(f"--subset expects KEY=VALUE with KEY one of {', '.join(SUBSET_KEYS)}, got {expression!r}")
    return key, value


def apply_subsets(items: Sequence[Item], subsets: Sequence[tuple[str, str]]) -> list[Item]:
    """Items matching every filter; a filter on the same key given twice matches either value."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for key, value in subsets:
        wanted[key].add(value.casefold())
    return [
        item for item in items
        if all(str(getattr(item, key) or "").casefold() in values for key, values in wanted.items())
    ]


def stratified_sample(items: Sequence[Item], limit: int, seed: int, salt: str) -> list[Item]:
    """`limit` items, allocated to subjects in proportion (largest remainder), seeded, in file order."""
    if limit >= len(items):
        return list(items)
    strata: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[item.subject or ""].append(index)
    names = sorted(strata)
    exact = {name: limit * len(strata[name]) / len(items) for name in names}
    quota = {name: int(exact[name]) for name in names}
    leftover = limit - sum(quota.values())
    by_remainder = sorted(names, key=lambda name: (-(exact[name] - quota[name]), name))
    for name in by_remainder[:leftover]:
        quota[name] += 1
    chosen: list[int] = []
    for name in names:
        rng = random.Random(f"medgate-sample:{salt}:{seed}:{name}")
        chosen += rng.sample(strata[name], quota[name])
    return [items[index] for index in sorted(chosen)]
