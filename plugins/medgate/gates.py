"""Release gates: thresholds from fixtures/thresholds/<model>.toml (else default.toml), overridable
with `--threshold NAME=VALUE`, turned into one gate case per metric cell.

A thresholds file has one table per metric with `min` (or `max`, for flip_rate), optional
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
from typing import Any

from medgate.metrics import ALL, ORIGINAL, MetricValue
from medgate.paths import fixtures_dir
from medgate.perturbations import PerturbationError, get

# metric -> (bound, which cells it gates: "dataset" | "perturbed" | "perturbation" | "pairs")
GATE_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("min", "dataset"),
    "lenient_accuracy": ("min", "dataset"),
    "compliance": ("min", "perturbation"),
    "stability": ("min", "perturbed"),
    "flip_rate": ("max", "perturbed"),
    "worst_case_accuracy": ("min", "worst"),
    "prompt_agreement": ("min", "perturbation"),
    "crosslingual_agreement": ("min", "pairs"),
}
GENERATE_ONLY = {"lenient_accuracy", "compliance"}


class GateConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Thresholds:
    source: str
    rules: Mapping[str, Mapping[str, Any]]

    def threshold(self, metric: str, dataset: str, perturbation: str) -> float | None:
        rule = self.rules.get(metric)
        if rule is None:
            return None
        scope = rule.get("datasets")
        if scope is not None and not set(dataset.split("|")) <= set(scope):
            return None
        only = rule.get("perturbations")
        if only is not None and perturbation not in only:
            return None
        bound = GATE_METRICS[metric][0]
        for table, key in (("by_perturbation", perturbation), ("by_dataset", dataset)):
            overrides = rule.get(table, {})
            if key in overrides:
                return float(overrides[key])
        value = rule.get(bound)
        return None if value is None else float(value)


def parse_threshold_override(expression: str) -> tuple[str, float]:
    match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*([0-9.eE+-]+)\s*", expression)
    if not match:
        raise GateConfigError(f"--threshold expects NAME=VALUE (e.g. accuracy=0.9), got {expression!r}")
    name, text = match.groups()
    if name not in GATE_METRICS:
        raise GateConfigError(f"--threshold {expression!r}: unknown metric {name!r}; known: {', '.join(GATE_METRICS)}")
    try:
        value = float(text)
    except ValueError:
        raise GateConfigError(f"--threshold {expression!r}: {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise GateConfigError(f"--threshold {expression!r}: {value} is outside [0, 1]")
    return name, value


def thresholds_file(model_alias: str, explicit: str | None = None) -> Path:
    if explicit:
        path = Path(explicit)
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
        if metric not in GATE_METRICS or not isinstance(rule, dict):
            raise GateConfigError(f"{path}: unknown gate metric [{metric}]; known: {', '.join(GATE_METRICS)}")
        bound = GATE_METRICS[metric][0]
        if bound not in rule:
            raise GateConfigError(f"{path}: [{metric}] needs `{bound}`")
        _check_values(path, metric, rule)
        _check_perturbation_scope(path, metric, rule.get("perturbations"))
        _check_prompt_scope(path, metric, rule.get("prompts"))
        rules[metric] = dict(rule)
    for metric, value in overrides:  # the command line wins over every per-cell override
        rules[metric] = {GATE_METRICS[metric][0]: value}
    return Thresholds(str(path), rules)


def _check_values(path: Path, metric: str, rule: Mapping[str, Any]) -> None:
    """Every threshold a number in [0, 1], as on the command line: `nan` would pass every gate."""
    bound = GATE_METRICS[metric][0]
    values = [(bound, rule[bound])]
    for table in ("by_perturbation", "by_dataset"):
        overrides = rule.get(table, {})
        if not isinstance(overrides, dict):
            raise GateConfigError(f"{path}: [{metric}] {table} must be a table of NAME = VALUE")
        values += [(f"{table}.{key}", value) for key, value in overrides.items()]
    for name, value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise GateConfigError(f"{path}: [{metric}] {name} = {value!r}: a threshold must be a number in [0, 1]")


def _check_perturbation_scope(path: Path, metric: str, names: Any) -> None:
    """A misspelt name would silently gate nothing, so every name must be a known perturbation."""
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise GateConfigError(f"{path}: [{metric}] perturbations must be a list of perturbation names")
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
    if not isinstance(names, list) or any(name not in known for name in names):
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
        parts = [self.dataset]
        if self.perturbation not in (ORIGINAL, ALL) or GATE_METRICS[self.metric][1] == "perturbation":
            parts.append(self.perturbation)
        if self.prompt != ALL:
            parts.append(self.prompt)
        elif self.mode != "loglik" and self.metric not in GENERATE_ONLY:
            parts.append(self.mode)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate_cells(metric: str, thresholds: Thresholds, cells: Iterable[tuple[str, str, str, str]]) -> list[GateCell]:
    """Gate cells for `metric` given the run's (dataset, perturbation, prompt, mode) combinations."""
    if metric not in thresholds.rules:
        return []
    bound, scope = GATE_METRICS[metric]
    combos = set(cells)
    datasets = sorted({c[0] for c in combos})
    wanted: set[tuple[str, str, str]] = set()
    for dataset, perturbation, _, mode in combos:
        if metric in GENERATE_ONLY and mode != "generate":
            continue
        if scope == "dataset" and perturbation == ORIGINAL:
            wanted.add((dataset, ORIGINAL, mode))
        elif scope == "perturbed" and perturbation != ORIGINAL:
            wanted.add((dataset, perturbation, mode))
        elif scope == "perturbation":
            wanted.add((dataset, perturbation, mode))
        elif scope == "worst":
            perturbations = {c[1] for c in combos if c[0] == dataset and c[3] == mode}
            if len(perturbations) > 1:
                wanted.add((dataset, ALL, mode))
    if scope == "pairs":
        wanted = {(pair, perturbation, mode) for pair in _language_pairs(datasets)
                  for (_, perturbation, _, mode) in combos}
    if metric == "prompt_agreement":
        prompts = {(c[0], c[3]): set() for c in combos}
        for dataset, _, prompt, mode in combos:
            prompts[(dataset, mode)].add(prompt)
        wanted = {w for w in wanted if len(prompts.get((w[0], w[2]), ())) > 1}
    ran: dict[str, set[str]] = {}
    for _, _, prompt, mode in combos:
        ran.setdefault(mode, set()).add(prompt)
    only = thresholds.rules[metric].get("prompts")
    result = []
    for dataset, perturbation, mode in sorted(wanted):
        value = thresholds.threshold(metric, dataset, perturbation)
        if value is None:
            continue
        if only is None or metric == "prompt_agreement" or len(ran.get(mode, ())) == 1:
            if only is None or ran.get(mode, set()) & set(only):
                result.append(GateCell(metric, dataset, perturbation, ALL, mode, bound, value))
            continue
        for prompt in sorted(ran.get(mode, set()) & set(only)):
            result.append(GateCell(metric, dataset, perturbation, prompt, mode, bound, value))
    return result


def _language_pairs(datasets: list[str]) -> list[str]:
    """`en|es` pairs of datasets that differ only by their language suffix (sample-en|sample-es)."""
    pairs = []
    for name in datasets:
        if name.endswith("-en") and name[:-3] + "-es" in datasets:
            pairs.append(f"{name}|{name[:-3]}-es")
    return pairs


@dataclass(frozen=True)
class GateVerdict:
    cell: GateCell
    passed: bool | None  # None: nothing to evaluate (no cases ran for this cell)
    value: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
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


def evaluate(cell: GateCell, metrics: Mapping[tuple[str, str, str, str, str], MetricValue]) -> GateVerdict:
    found = metrics.get((cell.metric, cell.dataset, cell.perturbation, cell.prompt, cell.mode))
    prompts = "all prompts" if cell.prompt == ALL else f"prompt {cell.prompt}"
    where = f"{cell.dataset}, {cell.perturbation}, {prompts}, {cell.mode}"
    if found is None or found.n == 0 or found.value is None:
        return GateVerdict(cell, None, None, 0, None, None, f"{cell.metric}: no cases ran for [{where}]")
    value = found.value
    passed = value >= cell.threshold if cell.bound == "min" else value <= cell.threshold
    relation = ("is at least" if passed else "is below") if cell.bound == "min" else \
        ("is at most" if passed else "is above")
    message = (f"{cell.metric} {value:.3f} {relation} the threshold {cell.threshold:.3f} "
               f"(n={found.n}, 95% Wilson CI {found.ci_low:.3f}-{found.ci_high:.3f}) [{where}]")
    return GateVerdict(cell, passed, value, found.n, found.ci_low, found.ci_high, message)
