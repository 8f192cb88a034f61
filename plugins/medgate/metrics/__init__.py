"""Metrics over case records, per cell (dataset x perturbation x prompt x mode) with n and a 95% interval.

The catalogue (catalogue.py) says what each metric is; units.py and one module per newer metric
compute them; scopes.py says which blocks of a run their gates cover. Definitions: the README.
"""

from medgate.metrics.compute import compute_metrics, index_metrics, statistics, unit_metrics, unit_outcomes
from medgate.metrics.records import CaseRecord, TwinPair
from medgate.metrics.units import CellUnits, case_unit, combo_of
from medgate.metrics.values import ALL, ORIGINAL, Block, Cell, Combo, MetricValue, Statistic, Unit, proportion

Record = CaseRecord  # the name older callers import

__all__ = ["ALL", "ORIGINAL", "Block", "CaseRecord", "Cell", "CellUnits", "Combo", "MetricValue", "Record",
           "Statistic", "TwinPair", "Unit", "case_unit", "combo_of", "compute_metrics", "index_metrics",
           "proportion", "statistics", "unit_metrics", "unit_outcomes"]
