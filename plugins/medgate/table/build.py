"""The model table's numbers: one row per report, a column per dataset x headline metric x mode.

An adapter over the existing metrics and the paired comparison, so the table says what `medgate diff`
says: each value (and its 95% Wilson interval) is the report's own metric cell (unit_metrics over its
cases); each difference against the reference (paired bootstrap interval, exact McNemar p) is the cell
`compare_reports(reference, report)` gives; the McNemar p-values are then Holm-corrected again, across
every difference the table shows (one family), and marked significant below alpha. A block that
`medgate diff` calls incomparable (the item, prompt or perturbation changed) is shown as such and never
enters the family.

Columns (prompt `*`: pooled over the prompts of the mode):
- accuracy on the original (unperturbed) items;
- worst-case accuracy: share of items right under every perturbation run;
- stability under each perturbation;
- compliance (generate mode) on the original items;
- cross-lingual agreement of English/Spanish twins on the original items (dataset `<en>|<es>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from medgate.compare.comparison import CompareSettings, compare_reports
from medgate.metrics import ALL, ORIGINAL, MetricValue, unit_metrics
from medgate.stats import holm_adjust

METRICS = ("accuracy", "worst_case_accuracy", "stability", "compliance", "crosslingual_agreement")
METRIC_TITLES = {"accuracy": "accuracy (original)", "worst_case_accuracy": "worst-case accuracy",
                 "stability": "stability", "compliance": "compliance (original)",
                 "crosslingual_agreement": "cross-lingual agreement (original)"}
LANGUAGE_ORDER = {"en": 0, "es": 1}
CROSSLINGUAL_GROUP = "en–es"


@dataclass(frozen=True, order=True)
class Column:
    group: str  # the language of the dataset, or en–es for cross-lingual twins
    dataset: str
    metric: str
    mode: str
    perturbation: str  # original, * (worst case) or the perturbation whose stability it is

    @property
    def title(self) -> str:
        title = METRIC_TITLES[self.metric]
        if self.metric == "stability":
            title += f" ({self.perturbation})"
        return f"{title}, {self.mode}"

    @property
    def label(self) -> str:
        return f"{self.dataset}: {self.title}"


@dataclass
class Difference:
    """The paired difference of a row against the reference in one column, as `medgate diff` gives it."""

    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    units: int = 0
    p_value: float | None = None
    p_adjusted: float | None = None  # Holm across the whole table
    significant: bool = False
    incomparable: list[str] = field(default_factory=list)  # the reasons, when the block may not be compared


@dataclass
class Entry:
    value: MetricValue | None
    difference: Difference | None = None


@dataclass
class Row:
    label: str
    path: str
    reference: bool
    entries: dict[Column, Entry]


@dataclass
class ModelTable:
    columns: list[Column]
    rows: list[Row]
    alpha: float
    reference: str | None  # the reference row's label
    warnings: list[str] = field(default_factory=list)  # what makes a row weaker than it looks

    @property
    def tested(self) -> int:
        return sum(1 for row in self.rows for entry in row.entries.values()
                   if entry.difference is not None and entry.difference.p_value is not None)


def _languages(document: Mapping[str, Any]) -> dict[str, str]:
    languages: dict[str, str] = {}
    for case in document["cases"]:
        languages.setdefault(case["dataset"], case["language"])
    return languages


def _column(value: MetricValue, languages: Mapping[str, str]) -> Column | None:
    metric, dataset, perturbation, prompt, mode = value.cell
    if metric not in METRICS or prompt != ALL:
        return None
    wanted = {"worst_case_accuracy": perturbation == ALL, "stability": perturbation not in (ORIGINAL, ALL)}
    if not wanted.get(metric, perturbation == ORIGINAL):
        return None
    group = CROSSLINGUAL_GROUP if metric == "crosslingual_agreement" else languages.get(dataset, "?")
    return Column(group, dataset, metric, mode, perturbation)


def _column_order(column: Column) -> tuple[Any, ...]:
    crosslingual = column.group == CROSSLINGUAL_GROUP
    return (crosslingual, LANGUAGE_ORDER.get(column.group, 2), column.group, column.dataset,
            METRICS.index(column.metric), column.mode, column.perturbation)


def row_values(document: Mapping[str, Any]) -> dict[Column, MetricValue]:
    languages = _languages(document)
    values = {}
    # The table's metrics are all counted per unit: the statistics (and their bootstraps) are not needed.
    for value in unit_metrics(document["cases"]):
        column = _column(value, languages)
        if column is not None and value.value is not None:
            values[column] = value
    return values


def _compared_cell(cells: Iterable[Mapping[str, Any]], column: Column) -> Mapping[str, Any] | None:
    """The comparison's cell for a column: the pooled `*` prompt, or the only prompt where the comparison
    left out the pooled cell (with one prompt it repeats that prompt's cell unit for unit)."""
    matching = [c for c in cells if (c["metric"], c["dataset"], c["perturbation"], c["mode"])
                == (column.metric, column.dataset, column.perturbation, column.mode)]
    pooled = [c for c in matching if c["prompt"] == ALL]
    if pooled:
        return pooled[0]
    return matching[0] if len(matching) == 1 else None


def _difference(cell: Mapping[str, Any] | None) -> Difference | None:
    if cell is None:
        return None
    if not cell["comparable"]:
        return Difference(incomparable=list(cell["reasons"]))
    return Difference(delta=cell["delta"], ci_low=cell["ci_low"], ci_high=cell["ci_high"], units=cell["units"],
                      p_value=cell["p_value"])


def _short_alias(alias: str) -> str:
    """A checkpoint given as a folder path is named by its folder; registry names and hub ids stay whole."""
    return PurePath(alias).name or alias if alias.startswith(("/", ".", "~")) else alias


def unique_labels(documents: Sequence[Mapping[str, Any]], paths: Sequence[str]) -> list[str]:
    """Each report's model alias; where two share one, the report's file name tells them apart."""
    aliases = [_short_alias(str(((d.get("manifest") or {}).get("model") or {}).get("alias") or p))
               for d, p in zip(documents, paths)]
    return [f"{alias} ({path})" if aliases.count(alias) > 1 else alias for alias, path in zip(aliases, paths)]


def build_table(documents: Sequence[Mapping[str, Any]], paths: Sequence[str], reference: int | None = None,
                settings: CompareSettings = CompareSettings()) -> ModelTable:
    """The table of `documents` (reports as load_report gives them); `reference` indexes the reference row."""
    labels = unique_labels(documents, paths)
    values = [row_values(document) for document in documents]
    columns = sorted({column for row in values for column in row}, key=_column_order)
    rows = []
    warnings = [warning for document, label in zip(documents, labels) for warning in _row_warnings(document, label)]
    for index, (document, label, path) in enumerate(zip(documents, labels, paths)):
        compared = None
        if reference is not None and index != reference:
            comparison = compare_reports(documents[reference], document, settings)
            compared = comparison["cells"]
            if not comparison["cases"]["common"]:
                warnings.append(f"{label} shares no case with the reference {labels[reference]}: nothing was compared")
        entries = {}
        for column in columns:
            difference = _difference(_compared_cell(compared, column)) if compared is not None else None
            entries[column] = Entry(values[index].get(column), difference)
        rows.append(Row(label, path, index == reference, entries))
    tested = [entry.difference for row in rows for entry in row.entries.values()
              if entry.difference is not None and entry.difference.p_value is not None]
    for difference, adjusted in zip(tested, holm_adjust([d.p_value for d in tested if d.p_value is not None])):
        difference.p_adjusted = adjusted
        difference.significant = adjusted < settings.alpha
    return ModelTable(columns, rows, settings.alpha, labels[reference] if reference is not None else None,
                      warnings)


def _row_warnings(document: Mapping[str, Any], label: str) -> list[str]:
    status, cases = document.get("status"), document.get("cases") or []
    found = []
    if status in ("incomplete", "interrupted"):
        missing = len(document.get("missing_cases") or [])
        found.append(f"{label} is {status} ({missing} case(s) without a result): its values leave those out")
    if not cases:
        found.append(f"{label} holds no case")
    return found
