"""One table of several models' reports: a row per model; per dataset (grouped by language) accuracy on the
original items, worst-case accuracy, stability per perturbation, compliance and cross-lingual agreement, each
with its 95% interval. With --reference, each other model's paired difference against the reference, with
exact McNemar p-values Holm-corrected across the table; incomparable blocks are shown, never compared.
Exit status: 0 written, 2 bad usage or an unreadable report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medgate.compare.command import alpha_argument
from medgate.compare.comparison import CompareSettings
from medgate.compare.reports import ReportError, load_report
from medgate.options import NON_NEGATIVE, POSITIVE
from medgate.report.document import emit_text
from medgate.table.build import build_table
from medgate.table.render import RENDERERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", type=Path, nargs="+", metavar="REPORT", help="run reports, one row each")
    parser.add_argument("--reference", type=Path, metavar="REPORT",
                        help="the model the others are compared with (say the general base model); its row comes first")
    parser.add_argument("--format", choices=tuple(RENDERERS), default="md", help="md (default), html, csv or latex")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write there instead of standard output")
    parser.add_argument("--alpha", type=alpha_argument, default=CompareSettings.alpha,
                        help=f"family-wise error rate across the table (default {CompareSettings.alpha})")
    parser.add_argument("--replicates", type=POSITIVE, default=CompareSettings.replicates, metavar="N",
                        help=f"bootstrap replicates per difference (default {CompareSettings.replicates})")
    parser.add_argument("--seed", type=NON_NEGATIVE, default=CompareSettings.seed, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    # One report however its path is spelt (./a.json, /abs/a.json): shown twice it would be compared with itself.
    paths: list[Path] = []
    for path in ([args.reference] if args.reference else []) + list(args.reports):
        if path.resolve() not in {kept.resolve() for kept in paths}:
            paths.append(path)
    try:
        documents = [load_report(path) for path in paths]
        settings = CompareSettings(alpha=args.alpha, replicates=args.replicates, seed=args.seed)
        table = build_table(documents, [str(p) for p in paths], 0 if args.reference else None, settings)
    except (ReportError, ValueError) as error:
        print(f"medgate table: {error}", file=sys.stderr)
        return 2
    text = RENDERERS[args.format](table)
    if not emit_text(text, args.out, "medgate table"):
        return 2
    for warning in table.warnings:
        print(f"medgate table: warning: {warning}", file=sys.stderr)
    significant = sum(1 for row in table.rows for entry in row.entries.values()
                      if entry.difference is not None and entry.difference.significant)
    print(f"medgate table: {len(table.rows)} model(s), {len(table.columns)} column(s)"
          + (f"; {significant} of {table.tested} differences significant (Holm, alpha {table.alpha})"
             if args.reference else ""), file=sys.stderr)
    return 0
