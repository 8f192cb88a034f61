"""What a paired comparison needs from the metric units (defined once, in medgate.metrics).

Metrics whose units are plain 0/1 successes are proportions, which McNemar's test applies to (the
catalogue's paired metrics); flip_rate's denominator depends on each run's originals, and the
statistics (position bias, prompt spread, calibration) are not sums of units: they are compared by
their values only.
"""

from __future__ import annotations

from medgate.metrics import (
    Cell,
    CellUnits,
    Combo,
    Record,
    Statistic,
    Unit,
    case_unit,
    combo_of,
    statistics,
    unit_outcomes,
)
from medgate.metrics.catalogue import PAIRED


__all__ = ["PAIRED", "Cell", "CellUnits", "Combo", "Record", "Statistic", "Unit", "case_unit",
           "combo_of", "statistics", "unit_outcomes"]
