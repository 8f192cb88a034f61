"""Release gates: thresholds from fixtures/thresholds/<model>.toml (else default.toml), overridable
with `--threshold NAME=VALUE`, turned into one gate case per metric cell.

A thresholds file has one table per metric of the catalogue (medgate.metrics.catalogue) with `min`
(or `max`, for a metric where lower is better: flip_rate, position_bias, ece, ...), optional
`by_dataset` / `by_perturbation` tables of overrides, an optional `datasets` list that limits
the gate to those datasets, an optional `perturbations` list that limits it to those
perturbations (for a model that is robust to some perturbations by design and not to others), and
an optional `prompts` list: then the gate is evaluated on each listed prompt on its own rather than
on all prompts of the mode together (`accuracy[sample-en/p0]`; with a single prompt of the mode in
the run, the id stays `accuracy[sample-en]`):

    [accuracy]
    min = 0.6
    by_dataset = { "headqa-es" = 0.5 }
    datasets = ["medqa", "headqa-es"]
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from medgate.metrics import ALL, ORIGINAL, Cell, Combo, MetricValue
from medgate.metrics.catalogue import CATALOGUE
from medgate.metrics.records import datasets_of
from medgate.metrics.scopes import blocks
from medgate.paths import fixtures_dir
from medgate.perturbations import PerturbationError, get


class GateConfigError(ValueError):
    pass


SCOPE_KEYS = ("datasets", "perturbations", "prompts")  # where a rule applies
OVERRIDE_TABLES = ("by_dataset", "by_perturbation")  # other values for some datasets or perturbations


@dataclass(frozen=True)
class Thresholds:
    source: str
    rules: Mapping[str, Mapping[str, Any]]

    def threshold(self, metric: str, dataset: str, perturbation: str) -> float | None:
        rule = self.rules.get(metric)
        if rule is None:
            return None
        scope = rule.get("datasets")
        if scope is not None and not datasets_of(dataset) <= set(scope):
            return None
        only = rule.get("perturbations")
        if only is not None and perturbation not in only:
            return None
        bound = CATALOGUE[metric].bound
        for table, key in (("by_perturbation", perturbation), ("by_dataset", dataset)):
            overrides = rule.get(table, {})
            if key in overrides:
                return float(overrides[key])
        value = rule.get(bound)
        return None if value is None else float(value)


def unknown_datasets(thresholds: Thresholds, ran: Iterable[str], registered: Iterable[str]) -> list[str]:
    """Dataset names in the rules that are neither in this run nor registered: misspellings that would
    silently gate nothing (a rule may name a registered dataset this run does not include)."""
    known = set(ran) | set(registered)
    found = []
    for metric, rule in thresholds.rules.items():
        for key in ("datasets", "by_dataset"):
            found += [f"[{metric}] {key}: {name!r}" for name in rule.get(key, ()) if name not in known]
    return found


def parse_threshold_override(expression: str) -> tuple[str, float]:
    match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*([0-9.eE+-]+)\s*", expression)
    if not match:
        raise GateConfigError(f"--threshold expects NAME=VALUE (e.g. accuracy=0.9), got {expression!r}")
    name, text = match.groups()
    if name not in CATALOGUE:
        raise GateConfigError(f"--threshold {expression!r}: unknown metric {name!r}; known: {', '.join(CATALOGUE)}")
    try:
        value = float(text)
    except ValueError:
        raise GateConfigError(f"--threshold {expression!r}: {text!r} is not a number") from None
    upper = CATALOGUE[name].upper
    if not 0.0 <= value <= upper:
        raise GateConfigError(f"--threshold {expression!r}: {value} is outside [0, {upper:g}]")
    return name, value


def thresholds_file(model_alias: str, explicit: str | None = None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise GateConfigError(f"--thresholds {explicit}: no such file")
        return path
    folder = fixtures_dir() / "thresholds"
    candidate = folder / f"{model_alias}.toml"
    if re.fullmatch(r"[\w.-]+", model_alias) and candidate.is_file():
        return candidate
    return folder / "default.toml"


def load_thresholds(path: Path, overrides: Iterable[tuple[str, float]] = ()) -> Thresholds:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:  # its message ends "(at line L, column C)"
        raise GateConfigError(f"{path}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise GateConfigError(f"{path}: cannot read the thresholds file: {error}") from None
    rules: dict[str, dict[str, Any]] = {}
    for metric, rule in data.items():
        if metric not in CATALOGUE:
            raise GateConfigError(f"{path}: unknown gate metric [{metric}]; known: {', '.join(CATALOGUE)}")
        bound = CATALOGUE[metric].bound
        if not isinstance(rule, dict):
            raise GateConfigError(f"{path}: `{metric} = ...` must be a table: [{metric}] and then {bound} = VALUE")
        _check_keys(path, metric, rule)
        if bound not in rule:
            raise GateConfigError(f"{path}: [{metric}] needs `{bound}`")
        _check_values(path, metric, rule)
        _check_dataset_scope(path, metric, rule)
        _check_perturbation_scope(path, metric, rule)
        _check_prompt_scope(path, metric, rule.get("prompts"))
        rules[metric] = dict(rule)
    for metric, value in overrides:
        # The command line changes the number, not where the gate applies: the file's scope stays, and
        # the value wins over the file's per-dataset and per-perturbation values.
        scope = {key: setting for key, setting in rules.get(metric, {}).items() if key in SCOPE_KEYS}
        rules[metric] = {**scope, CATALOGUE[metric].bound: value}
    return Thresholds(str(path), rules)


def _check_keys(path: Path, metric: str, rule: Mapping[str, Any]) -> None:
    """A misspelt key (`dataset`, `modes`) would be ignored and the gate would apply elsewhere."""
    bound = CATALOGUE[metric].bound
    allowed = {bound, *OVERRIDE_TABLES, *SCOPE_KEYS}
    for key in rule:
        if key in ("min", "max") and key != bound:
            better = "higher" if bound == "min" else "lower"
            raise GateConfigError(f"{path}: [{metric}] `{key}` does not apply: {metric} is gated with `{bound}` "
                                  f"(a {better} value is better)")
        if key not in allowed:
            raise GateConfigError(f"{path}: [{metric}] unknown key `{key}`; a rule takes {', '.join(sorted(allowed))}")


def _check_values(path: Path, metric: str, rule: Mapping[str, Any]) -> None:
    """Every threshold a number in [0, upper], as on the command line: `nan` would pass every gate."""
    bound, upper = CATALOGUE[metric].bound, CATALOGUE[metric].upper
    values: list[tuple[str, Any]] = [(bound, rule[bound])]
    for table in ("by_perturbation", "by_dataset"):
        overrides = rule.get(table, {})
        if not isinstance(overrides, dict):
            raise GateConfigError(f"{path}: [{metric}] {table} must be a table of NAME = VALUE")
        values += [(f"{table}.{key}", value) for key, value in overrides.items()]
    for name, value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= upper:
            raise GateConfigError(f"{path}: [{metric}] {name} = {value!r}: a threshold must be a number in "
                                  f"[0, {upper:g}]")


def _names(path: Path, metric: str, key: str, names: Any, what: str) -> list[str]:
    """A scope list: a non-empty list of names (an empty one, or a string, would gate nothing)."""
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise GateConfigError(f"{path}: [{metric}] {key} must be a non-empty list of {what}, e.g. {key} = [\"...\"]")
    return names


def _check_dataset_scope(path: Path, metric: str, rule: Mapping[str, Any]) -> None:
    """Names are checked against the run once its datasets are known (`unknown_datasets`)."""
    if "datasets" in rule:
        _names(path, metric, "datasets", rule["datasets"], "dataset names")


def _check_perturbation_scope(path: Path, metric: str, rule: Mapping[str, Any]) -> None:
    """A misspelt name would silently gate nothing, so every name must be a known perturbation."""
    names = list(rule.get("by_perturbation", {}))
    if "perturbations" in rule:
        names += _names(path, metric, "perturbations", rule["perturbations"], "perturbation names")
    for name in names:
        try:
            get(name)
        except PerturbationError as error:
            raise GateConfigError(f"{path}: [{metric}] perturbations: {error}") from None


def _check_prompt_scope(path: Path, metric: str, names: Any) -> None:
    from medgate.prompts import prompt_library

    if names is None:
        return
    known = prompt_library()
    if not isinstance(names, list) or not names or any(name not in known for name in names):
        raise GateConfigError(f"{path}: [{metric}] prompts must be a list of prompt names ({', '.join(known)})")


@dataclass(frozen=True)
class GateCell:
    metric: str
    dataset: str
    perturbation: str
    prompt: str
    mode: str
    bound: str  # "min" or "max"
    threshold: float

    @property
    def gate_id(self) -> str:
        spec = CATALOGUE[self.metric]
        parts = [self.dataset]
        if self.perturbation not in (ORIGINAL, ALL) or spec.scope in ("every", "prompts"):
            parts.append(self.perturbation)
        if self.prompt != ALL:
            parts.append(self.prompt)
        elif self.mode != "loglik" and spec.only_mode is None:
            parts.append(self.mode)
        return "/".join(parts)

    @property
    def metric_cell(self) -> Cell:
        return self.metric, self.dataset, self.perturbation, self.prompt, self.mode

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate_cells(metric: str, thresholds: Thresholds, cells: Iterable[Combo]) -> list[GateCell]:
    """Gate cells for `metric` given the run's (dataset, perturbation, prompt, mode) combinations."""
    if metric not in thresholds.rules:
        return []
    spec = CATALOGUE[metric]
    combos = set(cells)
    ran: dict[str, set[str]] = {}
    for _, _, prompt, mode in combos:
        ran.setdefault(mode, set()).add(prompt)
    only = thresholds.rules[metric].get("prompts")
    result = []
    for dataset, perturbation, mode in sorted(blocks(spec.scope, combos, spec.only_mode)):
        value = thresholds.threshold(metric, dataset, perturbation)
        if value is None:
            continue
        if only is None or spec.across_prompts or len(ran.get(mode, ())) == 1:
            if only is None or ran.get(mode, set()) & set(only):
                result.append(GateCell(metric, dataset, perturbation, ALL, mode, spec.bound, value))
            continue
        for prompt in sorted(ran.get(mode, set()) & set(only)):
            result.append(GateCell(metric, dataset, perturbation, prompt, mode, spec.bound, value))
    return result


GateKind = Literal["threshold", "regression", "error"]


class GateRecord(TypedDict):
    """A gate's outcome as the report stores it (fixtures/schemas/report.schema.json, `gate`)."""

    kind: NotRequired[GateKind]
    name: str
    metric: str
    dataset: str
    perturbation: str
    prompt: str
    mode: str
    bound: str
    threshold: float
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    passed: bool | None
    message: str
    p_value: NotRequired[float | None]
    baseline: NotRequired[float | None]
    current: NotRequired[float | None]
    p_adjusted: NotRequired[float | None]
    regressed_cells: NotRequired[list[str]]


@dataclass(frozen=True)
class GateVerdict:
    cell: GateCell
    passed: bool | None  # None: nothing to evaluate (no cases ran for this cell)
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    message: str
    p_value: float | None = None
    kind: GateKind = "threshold"

    def to_dict(self) -> GateRecord:
        record: GateRecord = {
            "name": f"{self.cell.metric}[{self.cell.gate_id}]",
            "metric": self.cell.metric,
            "dataset": self.cell.dataset,
            "perturbation": self.cell.perturbation,
            "prompt": self.cell.prompt,
            "mode": self.cell.mode,
            "bound": self.cell.bound,
            "threshold": self.cell.threshold,
            "value": self.value,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "passed": self.passed,
            "message": self.message,
        }
        if self.p_value is not None:
            record["p_value"] = self.p_value
        return record


@dataclass(frozen=True)
class GateError:
    """A gate that could not be evaluated (its evaluation raised): it fails with this message."""

    message: str
    kind: GateKind = "error"
    passed: bool = False


def evaluate(cell: GateCell, metrics: Mapping[Cell, MetricValue]) -> GateVerdict:
    found = metrics.get(cell.metric_cell)
    prompts = "all prompts" if cell.prompt == ALL else f"prompt {cell.prompt}"
    where = f"{cell.dataset}, {cell.perturbation}, {prompts}, {cell.mode}"
    if found is None or found.n == 0 or found.value is None:
        return GateVerdict(cell, None, None, 0, None, None, f"{cell.metric}: no cases ran for [{where}]")
    value = found.value
    passed = value >= cell.threshold if cell.bound == "min" else value <= cell.threshold
    relation = ("is at least" if passed else "is below") if cell.bound == "min" else \
        ("is at most" if passed else "is above")
    interval = CATALOGUE[cell.metric].interval
    details = [f"n={found.n}"]
    if interval and found.ci_low is not None and found.ci_high is not None:
        details.append(f"{interval} {found.ci_low:.3f}-{found.ci_high:.3f}")
    if found.p_value is not None:
        details.append(f"p={found.p_value:.2g}")
    message = (f"{cell.metric} {value:.3f} {relation} the threshold {cell.threshold:.3f} "
               f"({', '.join(details)}) [{where}]")
    return GateVerdict(cell, passed, value, found.n, found.ci_low, found.ci_high, message, found.p_value)
