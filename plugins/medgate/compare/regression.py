"""Regression gates: `--fail-on-regression accuracy:2pp` fails when a cell's accuracy fell by more
than 2 percentage points *and* the fall is significant after Holm's correction.

Both conditions are needed for a gate that neither cries wolf nor misses what matters: the
correction keeps the chance of any false alarm across every cell compared at or under alpha when
two checkpoints are equally good, and the margin keeps a significant but negligible change (likely
with tens of thousands of items) from blocking a release.

A gate covers one (dataset, perturbation, mode) of the run, like a threshold gate, and looks at
every compared cell there: each prompt and their aggregate, so a regression under one prompt is
not averaged away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medgate.gates import GateKind, GateRecord
from medgate.metrics import ALL, ORIGINAL, Combo, TwinPair
from medgate.metrics.catalogue import CATALOGUE, PAIRED
from medgate.metrics.scopes import blocks
from medgate.report.summary import change_text

NOTHING_COMPARED = "a regression gate with nothing to compare fails"
NO_BLOCK = "-"  # the dataset and mode of the gate that stands for a rule without any block
_EXPRESSION = re.compile(r"\s*([a-z_]+)\s*:\s*([0-9]*\.?[0-9]+)\s*pp\s*")


class RegressionRuleError(ValueError):
    pass


@dataclass(frozen=True)
class RegressionRule:
    metric: str
    margin: float  # a share: 0.02 is 2 percentage points

    @property
    def expression(self) -> str:
        return f"{self.metric}:{self.margin * 100:g}pp"


def parse_regression_rule(text: str) -> RegressionRule:
    match = _EXPRESSION.fullmatch(text)
    if not match:
        raise RegressionRuleError(
            f"--fail-on-regression expects METRIC:MARGINpp, e.g. accuracy:2pp or stability:0pp, got {text!r}")
    metric, number = match.groups()
    if metric == "flip_rate":
        raise RegressionRuleError(f"--fail-on-regression {text!r}: flip_rate counts different items in each run "
                                  "and has no paired test; gate on stability instead")
    if metric in CATALOGUE and metric not in PAIRED:
        raise RegressionRuleError(f"--fail-on-regression {text!r}: {metric} is not a per-unit proportion and has "
                                  f"no paired test; gate it with a threshold; paired: {', '.join(sorted(PAIRED))}")
    if metric not in PAIRED:
        raise RegressionRuleError(f"--fail-on-regression {text!r}: unknown metric {metric!r}; "
                                  f"known: {', '.join(name for name in CATALOGUE if name in PAIRED)}")
    points = float(number)
    if points >= 100:
        raise RegressionRuleError(f"--fail-on-regression {text!r}: the margin must be below 100pp")
    return RegressionRule(metric, points / 100.0)


def check_unique(rules: Iterable[RegressionRule]) -> None:
    seen: dict[str, RegressionRule] = {}
    for rule in rules:
        if rule.metric in seen and seen[rule.metric] != rule:
            raise RegressionRuleError(f"--fail-on-regression gives {rule.metric} twice "
                                      f"({seen[rule.metric].expression} and {rule.expression})")
        seen[rule.metric] = rule


@dataclass(frozen=True)
class RegressionCell:
    """One regression gate: a rule applied to one (dataset, perturbation, mode) block of the run."""

    metric: str
    margin: float
    dataset: str
    perturbation: str
    mode: str

    @property
    def rule(self) -> RegressionRule:
        return RegressionRule(self.metric, self.margin)

    @property
    def gate_id(self) -> str:
        if self.dataset == NO_BLOCK:
            return self.rule.expression
        spec = CATALOGUE[self.metric]
        parts = [self.rule.expression, self.dataset]
        if self.perturbation not in (ORIGINAL, ALL) or spec.regression_scope == "prompts":
            parts.append(self.perturbation)
        if self.mode != "loglik" and spec.only_mode is None:
            parts.append(self.mode)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def regression_cells(rules: Iterable[RegressionRule], combos: Iterable[Combo]) -> list[RegressionCell]:
    """The gates for `rules` given the run's (dataset, perturbation, prompt, mode) combinations."""
    combos = set(combos)
    cells: set[RegressionCell] = set()
    for rule in rules:
        spec = CATALOGUE[rule.metric]
        assert spec.regression_scope is not None  # parse_regression_rule admits paired metrics only
        cells.update(RegressionCell(rule.metric, rule.margin, *block)
                     for block in blocks(spec.regression_scope, combos, spec.only_mode))
    return sorted(cells, key=lambda c: (c.metric, c.dataset, c.perturbation != ORIGINAL, c.perturbation,
                                        c.mode != "loglik", c.mode))


@dataclass(frozen=True)
class RegressionVerdict:
    cell: RegressionCell
    passed: bool | None  # None: nothing comparable in this block
    headline: Mapping[str, Any] | None  # the compared cell the row shows
    regressed: tuple[Mapping[str, Any], ...]
    message: str
    kind: GateKind = "regression"

    def to_dict(self) -> GateRecord:
        h = self.headline or {}
        return {
            "kind": self.kind,
            "name": f"regression:{self.cell.gate_id}",
            "metric": self.cell.metric,
            "dataset": self.cell.dataset,
            "perturbation": self.cell.perturbation,
            "prompt": h.get("prompt", ALL),
            "mode": self.cell.mode,
            "bound": "max_drop",
            "threshold": self.cell.margin,
            "value": h.get("delta"),
            "n": h.get("units", 0),
            "baseline": h.get("baseline"),
            "current": h.get("current"),
            "ci_low": h.get("ci_low"),
            "ci_high": h.get("ci_high"),
            "p_value": h.get("p_value"),
            "p_adjusted": h.get("p_adjusted"),
            "regressed_cells": [cell_name(c) for c in self.regressed],
            "passed": self.passed,
            "message": self.message,
        }


def cell_name(cell: Mapping[str, Any]) -> str:
    return f"{cell['metric']}[{cell['dataset']}/{cell['perturbation']}/{cell['prompt']}/{cell['mode']}]"


def describe_change(cell: Mapping[str, Any]) -> str:
    """`0.958 -> 0.750 (-20.8 pp, 95% CI ...; 10 worse, 0 better, McNemar p=..., Holm-adjusted p=...)`."""
    if cell.get("baseline") is None or cell.get("current") is None:
        return "no value to compare"
    metric = cell.get("metric")
    interval = ("" if cell.get("ci_low") is None else
                f", 95% CI {change_text(cell['ci_low'], metric)} to {change_text(cell['ci_high'], metric)}")
    text = f"{cell['baseline']:.3f} -> {cell['current']:.3f} ({change_text(cell['delta'], metric)}{interval}"
    if cell.get("p_value") is None:
        return text + "; not a paired proportion: no McNemar test)"
    return (text + f"; {cell['worse']} worse, {cell['better']} better, McNemar p={cell['p_value']:.2g}, "
            f"Holm-adjusted p={cell['p_adjusted']:.2g})")


def is_regression(cell: Mapping[str, Any], margin: float) -> bool:
    return bool(cell.get("significant")) and cell["delta"] is not None and -cell["delta"] > margin + 1e-12


def evaluate_regression(cell: RegressionCell, comparison: Mapping[str, Any]) -> RegressionVerdict:
    where = f"[{cell.dataset}, {cell.perturbation}, {cell.mode}]"
    mine = [c for c in comparison["cells"] if (c["metric"], c["dataset"], c["perturbation"], c["mode"]) ==
            (cell.metric, cell.dataset, cell.perturbation, cell.mode)]
    compared = [c for c in mine if c["comparable"] and c["delta"] is not None]
    if not compared:
        blocked = sorted({reason for c in mine if not c["comparable"] for reason in c["reasons"]})
        why = f"incomparable with the baseline: {'; '.join(blocked)}" if blocked else "not in the baseline"
        if not any(_compared(c) for c in comparison["cells"] if c["metric"] == cell.metric):
            # A rule that compared nothing anywhere must not pass: the baseline shares no case with
            # the run (or none that may be compared), so nothing could have been caught.
            return RegressionVerdict(cell, False, None, (), f"{cell.metric} {where}: {why}; {NOTHING_COMPARED}")
        return RegressionVerdict(cell, None, None, (), f"{cell.metric} {where}: {why}")
    regressed = tuple(sorted((c for c in compared if is_regression(c, cell.margin)), key=lambda c: c["delta"]))
    aggregate = next((c for c in compared if c["prompt"] == ALL), None)
    headline = regressed[0] if regressed else (aggregate or min(compared, key=lambda c: c["delta"]))
    family = comparison["method"]["cells_tested"]
    margin = f"{cell.margin * 100:g} pp"
    if regressed:
        message = (f"{cell.metric} fell by more than {margin} with a significant drop in {len(regressed)} cell(s) "
                   f"(Holm over {family} cells, alpha {comparison['method']['alpha']}); worst "
                   f"{cell_name(headline)}: {describe_change(headline)}")
    else:
        message = (f"{cell.metric} {where}: no significant drop beyond {margin} in {len(compared)} cell(s); "
                   f"{cell_name(headline)}: {describe_change(headline)}")
    return RegressionVerdict(cell, not regressed, headline, regressed, message)


def _compared(cell: Mapping[str, Any]) -> bool:
    return bool(cell["comparable"]) and cell.get("delta") is not None


def gating_nothing(rule: RegressionRule, why: str) -> RegressionVerdict:
    """The failed verdict of a rule that has no block to gate at all (it would otherwise pass silently)."""
    cell = RegressionCell(rule.metric, rule.margin, NO_BLOCK, ALL, NO_BLOCK)
    return RegressionVerdict(cell, False, None, (), f"--fail-on-regression {rule.expression}: {why}; "
                                                    f"{NOTHING_COMPARED}")


def evaluate_rules(rules: Iterable[RegressionRule], comparison: Mapping[str, Any]) -> list[RegressionVerdict]:
    """Gate every block the comparison holds (`medgate diff`, where there is no run plan)."""
    combos = {(c["dataset"], c["perturbation"], c["prompt"], c["mode"]) for c in comparison["cells"]
              if c["metric"] == "accuracy" and TwinPair.parse(c["dataset"]) is None and c["prompt"] != ALL}
    verdicts = []
    for rule in rules:
        cells = regression_cells([rule], combos)
        if not cells:
            why = ("the reports share no case" if not comparison["cases"]["common"]
                   else f"the compared cases have no {rule.metric} cell")
            verdicts.append(gating_nothing(rule, why))
        verdicts += [evaluate_regression(cell, comparison) for cell in cells]
    return verdicts
