"""Every metric of a run from its case records, each computed by the computation its catalogue entry names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from medgate.metrics.catalogue import CATALOGUE
from medgate.metrics.records import CaseRecord
from medgate.metrics.units import Cells, CellUnits, usable
from medgate.metrics.values import Cell, MetricValue, Statistic, ratio_value


def unit_outcomes(records: Sequence[CaseRecord]) -> dict[Cell, CellUnits]:
    """The units of every metric counted per unit (one computation may fill several metrics)."""
    cases = usable(records)
    cells = Cells()
    for computation in dict.fromkeys(spec.units for spec in CATALOGUE.values() if spec.units is not None):
        computation(cases, cells)
    return dict(cells)


def statistics(records: Sequence[CaseRecord], intervals: bool = True) -> list[Statistic]:
    """The values of every metric that is not a sum of units (with their intervals, where they have one)."""
    cases = usable(records)
    found: list[Statistic] = []
    for computation in dict.fromkeys(spec.statistic for spec in CATALOGUE.values() if spec.statistic is not None):
        found += computation(cases, intervals)
    return found


def unit_metrics(records: Sequence[CaseRecord]) -> list[MetricValue]:
    """The cells of the metrics counted per unit, each a share with its Wilson interval (no statistics)."""
    return [ratio_value(cell, units.successes, units.n) for cell, units in unit_outcomes(records).items()]


def compute_metrics(records: Sequence[CaseRecord]) -> list[MetricValue]:
    """Every metric cell of the run, in a stable order (metric, dataset, perturbation, prompt, mode)."""
    cases = usable(records)  # once, so that both share its groupings
    values = unit_metrics(cases) + [statistic.value for statistic in statistics(cases)]
    return sorted(values, key=lambda value: value.cell)


def index_metrics(values: Iterable[MetricValue]) -> dict[Cell, MetricValue]:
    return {value.cell: value for value in values}
