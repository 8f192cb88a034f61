"""Compare two run reports (baseline first): per metric cell both values, the paired difference with
a 95% bootstrap interval, exact McNemar tests with Holm's correction across every cell, the items
that flipped, and optionally regression gates. Exit status: 0 compared (and every regression gate
passed), 1 a regression gate failed, 2 bad usage or an unreadable report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgate.compare.comparison import CORRECT_TO_WRONG, WRONG_TO_CORRECT, CompareSettings, compare_reports, headers
from medgate.compare.regression import RegressionRuleError, check_unique, evaluate_rules
from medgate.gates import GateRecord
from medgate.compare.reports import ReportError, load_report
from medgate.options import NON_NEGATIVE, POSITIVE, REGRESSION
from medgate.report.document import emit_text, json_text
from medgate.report.html import render_html
from medgate.report.markdown import render_comparison_markdown

FORMATS = ("md", "json", "html")


def alpha_argument(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", type=Path, help="the earlier report (e.g. reports/baselines/<model>/v1.json)")
    parser.add_argument("current", type=Path, help="the report to compare with it")
    parser.add_argument("--format", choices=FORMATS, default="md", help="md (default), json or html")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write there instead of standard output")
    parser.add_argument("--fail-on-regression", dest="rules", action="append", type=REGRESSION,
                        metavar="METRIC:MARGINpp", help="exit 1 when METRIC fell significantly by more than MARGIN "
                                                        "percentage points, e.g. accuracy:2pp; repeatable")
    parser.add_argument("--alpha", type=alpha_argument, default=CompareSettings.alpha,
                        help=f"family-wise error rate for the Holm-corrected tests (default {CompareSettings.alpha})")
    parser.add_argument("--replicates", type=POSITIVE, default=CompareSettings.replicates, metavar="N",
                        help=f"bootstrap replicates per cell (default {CompareSettings.replicates})")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=CompareSettings.seed, help="bootstrap seed (default 0)")


def _render(fmt: str, comparison: dict[str, Any], regressions: Sequence[GateRecord], baseline: dict[str, Any],
            current: dict[str, Any]) -> str:
    if fmt == "json":
        return json_text(comparison) + "\n"
    if fmt == "md":
        return render_comparison_markdown(comparison, regressions) + "\n"
    gates = [g for g in current.get("gates", []) if g.get("kind") != "regression"] + list(regressions)
    return render_html({**current, "gates": gates, "comparison": comparison}, baseline)


def run(args: argparse.Namespace) -> int:
    try:
        check_unique(args.rules or ())
        baseline, current = load_report(args.baseline), load_report(args.current)
        settings = CompareSettings(alpha=args.alpha, replicates=args.replicates, seed=args.seed)
        comparison = compare_reports(baseline, current, settings)
    except (ReportError, RegressionRuleError, ValueError) as error:
        print(f"medgate diff: {error}", file=sys.stderr)
        return 2
    comparison.update(headers(baseline, current, str(args.baseline), str(args.current)))
    regressions = [verdict.to_dict() for verdict in evaluate_rules(args.rules or (), comparison)]
    if args.rules:
        comparison["regressions"] = regressions
    try:
        text = _render(args.format, comparison, regressions, baseline, current)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        # The checks on loading cover what a comparison reads; a page also shows optional fields.
        print(f"medgate diff: cannot render the {args.format} page: a report holds a malformed field "
              f"({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    if not emit_text(text, args.out, "medgate diff"):
        return 2
    failed = [g for g in regressions if g["passed"] is False]
    flips = comparison["flips"]
    significant = sum(1 for c in comparison["cells"] if c.get("significant"))
    print(f"medgate diff: {comparison['cases']['common']} shared cases, {flips[CORRECT_TO_WRONG]} correct -> wrong, "
          f"{flips[WRONG_TO_CORRECT]} wrong -> correct, {significant} of {comparison['method']['cells_tested']} "
          f"cells changed significantly, {len(comparison['incomparable'])} incomparable block(s)"
          + (f"; regression gates: {len(failed)} of {len(regressions)} failed" if args.rules else ""),
          file=sys.stderr)
    for warning in comparison["warnings"]:
        print(f"medgate diff: warning: {warning}", file=sys.stderr)
    for gate in failed:
        print(f"FAILED {gate['name']}: {gate['message']}", file=sys.stderr)
    return 1 if failed else 0
