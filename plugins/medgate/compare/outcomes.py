"""What a paired comparison needs from the metric units (defined once, in medgate.metrics).

Metrics whose units are plain 0/1 successes are proportions, which McNemar's test applies to;
flip_rate's denominator depends on each run's originals, so it is compared only by its interval.
"""

from __future__ import annotations

from medgate.metrics import Cell, CellUnits, Combo, Record, Unit, case_unit, combo_of, unit_outcomes

__all__ = ["PROPORTIONS", "Cell", "CellUnits", "Combo", "Record", "Unit", "case_unit", "combo_of", "unit_outcomes"]

# Metrics whose units are plain successes (denominator always 1): McNemar applies to them.
PROPORTIONS = frozenset({"accuracy", "lenient_accuracy", "compliance", "stability", "worst_case_accuracy",
                         "prompt_agreement", "crosslingual_agreement"})
