"""A metric cell's place and value: what every computation returns and every reader reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

from medgate.stats import wilson_interval

ALL = "*"  # a cell over every prompt of the mode (prompt) or every perturbation run (perturbation)
ORIGINAL = "original"
Cell = tuple[str, str, str, str, str]  # metric, dataset, perturbation, prompt, mode
Combo = tuple[str, str, str, str]  # dataset, perturbation, prompt, mode: one block of cases
Block = tuple[str, str, str]  # dataset, perturbation, mode: what one gate covers
Unit = tuple[str, ...]
Ratio = tuple[int, int]  # numerator, denominator


class MetricRecord(TypedDict):
    """A metric cell as the report stores it (fixtures/schemas/report.schema.json, `metric`)."""

    name: str
    dataset: str
    perturbation: str
    prompt: str
    mode: str
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    successes: int | None
    p_value: NotRequired[float]


@dataclass(frozen=True)
class MetricValue:
    name: str
    dataset: str
    perturbation: str
    prompt: str
    mode: str
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    successes: int | None  # None for a statistic that is not a count of successes
    p_value: float | None = None  # a test the metric carries (position bias: chi-square goodness of fit)

    @property
    def cell(self) -> Cell:
        return self.name, self.dataset, self.perturbation, self.prompt, self.mode

    def to_dict(self) -> MetricRecord:
        entry: MetricRecord = {"name": self.name, "dataset": self.dataset, "perturbation": self.perturbation,
                               "prompt": self.prompt, "mode": self.mode, "value": self.value, "n": self.n,
                               "ci_low": self.ci_low, "ci_high": self.ci_high, "successes": self.successes}
        if self.p_value is not None:
            entry["p_value"] = self.p_value
        return entry


def proportion(name: str, dataset: str, perturbation: str, prompt: str, mode: str,
               flags: list[bool] | tuple[bool, ...]) -> MetricValue:
    n, successes = len(flags), sum(bool(flag) for flag in flags)
    return ratio_value((name, dataset, perturbation, prompt, mode), successes, n)


def ratio_value(cell: Cell, successes: int, n: int) -> MetricValue:
    """A share with its 95% Wilson interval (no value when nothing counts)."""
    if n == 0:
        return MetricValue(*cell, None, 0, None, None, 0)
    low, high = wilson_interval(successes, n)
    return MetricValue(*cell, successes / n, n, round(low, 6), round(high, 6), successes)


@dataclass(frozen=True)
class Statistic:
    """A metric value that is not a sum of units (a distance, a spread, a calibration error), with the
    blocks of cases it reads (a comparison marks it incomparable when one of them is)."""

    value: MetricValue
    combos: frozenset[Combo]
