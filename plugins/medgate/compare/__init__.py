"""Comparing two runs: paired statistics per metric cell, flipped items, regression gates."""

from medgate.compare.comparison import CompareSettings, compare_reports, run_header
from medgate.compare.regression import (
    RegressionCell,
    RegressionRule,
    RegressionRuleError,
    RegressionVerdict,
    evaluate_regression,
    evaluate_rules,
    gating_nothing,
    parse_regression_rule,
    regression_cells,
)
from medgate.compare.reports import ReportError, load_report, resolve_report, save_baseline

__all__ = [
    "CompareSettings", "RegressionCell", "RegressionRule", "RegressionRuleError", "RegressionVerdict", "ReportError",
    "compare_reports", "evaluate_regression", "evaluate_rules", "gating_nothing", "load_report", "parse_regression_rule",
    "regression_cells", "resolve_report", "run_header", "save_baseline",
]
