"""The metric catalogue: what each metric is, which blocks its gates cover and how it is computed.

Threshold gates, regression gates, comparisons, reports and the README's definitions read it. A new
metric is one entry here plus one computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from medgate.metrics import calibration, circular, consistency, crosslingual, position, prompt_sensitivity, units
from medgate.metrics.records import CaseRecord
from medgate.metrics.scopes import Scope
from medgate.metrics.units import UnitComputation
from medgate.metrics.values import Statistic

# records, and whether to compute intervals too (a comparison compares the values only)
StatisticComputation = Callable[[Sequence[CaseRecord], bool], list[Statistic]]
UnitKind = Literal["case", "item", "twin pair"]
Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: UnitKind  # what one counted unit is
    scope: Scope  # the blocks a threshold gate covers
    direction: Direction  # which way a value is better: a threshold is its `min` (higher) or `max` (lower)
    definition: str  # one line (the README has the full definition and its source)
    units: UnitComputation | None = None  # a sum of 0/1 units, or ...
    statistic: StatisticComputation | None = None  # ... a value computed over a block's cases
    regression_scope: Scope | None = None  # the blocks a regression gate covers (None: no paired test)
    only_mode: Literal["generate", "loglik"] | None = None  # measured in this mode only
    across_prompts: bool = False  # compares prompts: it has only an all-prompt (`*`) cell
    upper: float = 1.0  # the largest value it can take (a threshold must lie in [0, upper])
    interval: str | None = "95% Wilson CI"  # what its ci_low..ci_high are
    in_points: bool = True  # a share (or a difference of shares): changes read in percentage points

    def __post_init__(self) -> None:
        if (self.units is None) == (self.statistic is None):
            raise ValueError(f"metric {self.name}: exactly one of units and statistic computes it")
        if self.regression_scope is not None and self.statistic is not None:
            raise ValueError(f"metric {self.name}: a paired test needs a metric counted per unit")

    @property
    def bound(self) -> Literal["min", "max"]:
        return "min" if self.direction == "higher" else "max"

    @property
    def generate_only(self) -> bool:
        return self.only_mode == "generate"

    @property
    def paired(self) -> bool:
        """Its units are plain successes, paired between two runs: McNemar's test and regression gates apply."""
        return self.regression_scope is not None


_SPECS = (
    MetricSpec("accuracy", "case", "original", "higher",
               "share of cases answered with the gold option (generate: the strictly parsed JSON answer)",
               units=units.per_case, regression_scope="every"),
    MetricSpec("lenient_accuracy", "case", "original", "higher",
               "share of cases whose leniently extracted answer is the gold option",
               units=units.per_case, regression_scope="every", only_mode="generate"),
    MetricSpec("compliance", "case", "every", "higher",
               "share of outputs that are one JSON object valid against answer.schema.json",
               units=units.per_case, regression_scope="every", only_mode="generate"),
    MetricSpec("stability", "case", "perturbed", "higher",
               "share of perturbed cases that chose the same published option as the original",
               units=units.against_original, regression_scope="perturbed"),
    MetricSpec("flip_rate", "case", "perturbed", "lower",
               "among items right on the original, the share wrong when perturbed",
               units=units.against_original),
    MetricSpec("worst_case_accuracy", "item", "across", "higher",
               "share of items right under every perturbation run",
               units=units.worst_case, regression_scope="across"),
    MetricSpec("prompt_agreement", "item", "prompts", "higher",
               "share of items for which every prompt of the mode chose the same option",
               units=units.prompt_agreement, regression_scope="prompts", across_prompts=True),
    MetricSpec("crosslingual_agreement", "twin pair", "pairs", "higher",
               "share of English/Spanish twins answered with the same option",
               units=crosslingual.crosslingual, regression_scope="pairs"),
    MetricSpec("circular_accuracy", "item", "circular", "higher",
               "share of items right under every cyclic rotation of their options (CircularEval)",
               units=circular.circular_accuracy, regression_scope="circular"),
    MetricSpec("consistency", "item", "across", "higher",
               "share of items that chose the same published option under every perturbation run",
               units=consistency.consistency, regression_scope="across"),
    MetricSpec("position_bias", "case", "every", "lower",
               "total-variation distance between the chosen and the gold presented positions",
               statistic=position.position_bias, interval=None, in_points=False),
    MetricSpec("order_sensitivity_gap", "case", "across", "lower",
               "accuracy under the best minus the worst ordering of the options",
               statistic=position.order_sensitivity_gap, interval=None),
    MetricSpec("prompt_spread", "case", "prompts", "lower",
               "accuracy under the best prompt minus the worst (Mizrahi et al. 2024)",
               statistic=prompt_sensitivity.prompt_sensitivity, across_prompts=True, interval=None),
    MetricSpec("prompt_max_accuracy", "case", "prompts", "higher",
               "MaxP: accuracy under the best prompt of the mode",
               statistic=prompt_sensitivity.prompt_sensitivity, across_prompts=True, interval=None),
    MetricSpec("prompt_mean_accuracy", "case", "prompts", "higher",
               "AvgP: mean of the accuracies under each prompt of the mode",
               statistic=prompt_sensitivity.prompt_sensitivity, across_prompts=True, interval=None),
    MetricSpec("ece", "case", "every", "lower",
               "expected calibration error of the options' normalised probabilities, 10 equal-width bins",
               statistic=calibration.calibration, only_mode="loglik", interval="95% bootstrap CI",
               in_points=False),
    MetricSpec("brier", "case", "every", "lower",
               "Brier score of the options' normalised probabilities (sum over options, 0 to 2)",
               statistic=calibration.calibration, only_mode="loglik", upper=2.0, interval="95% bootstrap CI",
               in_points=False),
)
CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
PAIRED = frozenset(name for name, spec in CATALOGUE.items() if spec.paired)
