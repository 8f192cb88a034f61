"""The Markdown summary written next to every JSON report (and to a CI job summary): gates, headline
metrics and, for a comparison, the biggest regressions and the items that flipped.

Item text (and model paths) are escaped: Markdown renderers pass inline HTML through, a `|` would
break a table, and `[x](javascript:...)`, `![i](https://host/x.png)`, `@someone` or a bare URL would
become a live link, a remote image (fetched by every reader) or a notification in a CI job summary.
Markdown punctuation is backslash-escaped and URLs, `www.` names and `@` are defanged
(`https[:]//`, `www[.]`, `[@]`), as threat reports write them.
Lists are capped so that the summary stays readable (and under CI job-summary size limits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from medgate.compare.comparison import CORRECT_TO_WRONG, WRONG_TO_CORRECT
from medgate.report.summary import (
    Document,
    accuracy_grid,
    biggest_regressions,
    cell_label,
    change_text,
    flips_by_direction,
    gate_rows,
    headline,
    interval_text,
    limited,
    p_text,
    per_block,
    value_text,
)

FLIPS_SHOWN = 20
QUESTION_CHARS = 160


# Anywhere, not at word boundaries only: `_www.x.com` and `9https://x` became live links on GitHub.
_DEFANGED = ((re.compile(r"://"), "[:]//"), (re.compile(r"(?i)(www)\."), r"\1[.]"), (re.compile("@"), "[@]"),
             # Bidirectional overrides and isolates would reorder the rest of a table row as shown.
             (re.compile("[\u202a-\u202e\u2066-\u2069]"), ""))
# Brackets are what links and images need (`](`, `![`); the rest is emphasis, code and tables.
_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")


def md_text(text: Any, limit: int | None = None) -> str:
    """Plain text safe inside a Markdown table cell: no markup, no link, image or mention."""
    value = " ".join(str(text).split())
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    for pattern, replacement in _DEFANGED:
        value = pattern.sub(replacement, value)
    return escape(_PUNCTUATION.sub(r"\\\1", value), quote=False)


def md_code(text: Any) -> str:
    """An identifier as a code span (which shows `<`, `_` and `*` literally; only backticks and the
    table separator need care)."""
    value = " ".join(str(text).split()).replace("`", "'").replace("|", "\\|")
    return f"`{value}`"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _result(gate: Mapping[str, Any]) -> str:
    return {True: "✅ pass", False: "❌ **FAIL**", None: "skip"}[gate["passed"]]


def _gates(document: Document) -> list[str]:
    thresholds, regressions = gate_rows(document)
    lines: list[str] = []
    if thresholds:
        lines += ["## Gates", ""]
        lines += _table(["gate", "value", "bound", "n", "95% CI", "result"], [
            [md_text(g["name"]), value_text(g["value"]),
             f"{'≥' if g.get('bound') == 'min' else '≤'} {g['threshold']:.3f}", str(g.get("n", "")),
             "-" if g.get("ci_low") is None else f"{g['ci_low']:.3f}–{g['ci_high']:.3f}", _result(g)]
            for g in thresholds])
    if regressions:
        lines += ["## Regression gates", ""]
        lines += _table(["gate", "baseline", "current", "change", "95% CI", "p (Holm)", "result"], [
            [md_text(g["name"]), value_text(g["baseline"]), value_text(g["current"]), change_text(g["value"]),
             interval_text(g["ci_low"], g["ci_high"]), p_text(g["p_adjusted"]), _result(g)]
            for g in regressions])
        failing = [g for g in regressions if g["passed"] is False]
        lines += [f"- {md_text(g['message'])}" for g in failing] + ([""] if failing else [])
    return lines


def _metrics(document: Document) -> list[str]:
    grid = accuracy_grid(document)
    lines = ["## Headline metrics", ""]
    if grid.rows:
        lines += ["Accuracy over all prompts (n in brackets):", ""]
        lines += _table(["dataset"] + [md_text(c) for c in grid.columns], [
            [md_text(row)] + [f"{grid.values[(row, c)]['value']:.3f} ({grid.values[(row, c)]['n']})"
                              if (row, c) in grid.values else "-" for c in grid.columns]
            for row in grid.rows])
    for name, title in (("stability", "Stability under each perturbation"),
                        ("compliance", "JSON-Schema compliance (generate mode)")):
        rows = per_block(document, name)
        if rows:
            lines += [f"{title}:", ""]
            lines += _table(["dataset / perturbation", name, "n", "95% CI"], [
                [md_text(label), value_text(m["value"]), str(m["n"]), f"{m['ci_low']:.3f}–{m['ci_high']:.3f}"]
                for label, m in rows])
    return lines


def _flip_rows(flips: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[md_code(f["case_id"]), md_text(f["question"], QUESTION_CHARS), md_text(f["gold_label"]),
             md_text(f["baseline_answer"] or "none"), md_text(f["current_answer"] or "none")] for f in flips]


def comparison_lines(comparison: Mapping[str, Any]) -> list[str]:
    cases, flips, method = comparison["cases"], comparison["flips"], comparison["method"]
    base, current = comparison["baseline"], comparison["current"]
    lines = [f"## Comparison with {md_code(base['run_id'])}", ""]
    lines += [
        f"- Baseline: {md_text(base['model'])} {md_code((base['fingerprint'] or '-')[:12])} "
        f"({md_text(base['path'] or '-')}); current: {md_text(current['model'])} "
        f"{md_code((current['fingerprint'] or '-')[:12])}"
        + (" — the same checkpoint" if comparison["same_checkpoint"] else ""),
        f"- {cases['common']} shared cases compared; {len(cases['only_in_baseline'])} only in the baseline, "
        f"{len(cases['only_in_current'])} only in the current run",
        f"- Flipped: **{flips[CORRECT_TO_WRONG]} correct → wrong**, {flips[WRONG_TO_CORRECT]} wrong → correct",
        f"- {sum(1 for c in comparison['cells'] if c.get('significant'))} of {method['cells_tested']} cells changed "
        f"significantly ({md_text(method['test'])}, Holm-corrected, alpha {method['alpha']}); intervals: "
        f"{md_text(method['interval'])}, {method['replicates']} replicates",
        "",
    ]
    for block in comparison["incomparable"]:
        where = "/".join(block[k] for k in ("dataset", "perturbation", "prompt", "mode"))
        lines.append(f"- ⚠️ incomparable {md_text(where)}: {md_text('; '.join(block['reasons']))}")
    if comparison["incomparable"]:
        lines.append("")
    worst = biggest_regressions(comparison)
    if worst:
        lines += ["### Biggest regressions", ""]
        lines += _table(["cell", "baseline", "current", "change", "95% CI", "p", "p (Holm)", "significant"], [
            [md_text(cell_label(c)), value_text(c["baseline"]), value_text(c["current"]), change_text(c["delta"], c["metric"]),
             interval_text(c["ci_low"], c["ci_high"]), p_text(c["p_value"]), p_text(c["p_adjusted"]),
             "**yes**" if c["significant"] else "no"] for c in worst])
    for direction, title in ((CORRECT_TO_WRONG, "correct → wrong"), (WRONG_TO_CORRECT, "wrong → correct")):
        shown, more = limited(flips_by_direction(comparison, direction), FLIPS_SHOWN)
        if shown:
            lines += [f"### Flipped {title} ({flips[direction]})", ""]
            lines += _table(["case", "question", "gold", "baseline", "current"], _flip_rows(shown))
            if more:
                lines += [f"… and {more} more (see the JSON or HTML report).", ""]
    for key, title in (("only_in_baseline", "Cases only in the baseline"), ("only_in_current", "Cases only now")):
        shown, more = limited(cases[key], FLIPS_SHOWN)
        if shown:
            lines += [f"{title} ({len(cases[key])}): " + ", ".join(md_code(c) for c in shown)
                      + (f", … and {more} more" if more else ""), ""]
    return lines


def render_markdown(document: Document) -> str:
    lines = [f"# medgate report {md_code(document.get('run_id', ''))}", ""]
    lines += [f"- **{label}:** {md_text(text)}" for label, text in headline(document)] + [""]
    lines += _gates(document)
    lines += _metrics(document)
    if document.get("comparison"):
        lines += comparison_lines(document["comparison"])
    shown, more = limited(document.get("missing_cases", []), FLIPS_SHOWN)
    if shown:
        lines += [f"## Missing cases ({len(document['missing_cases'])})", ""]
        lines += [f"- {md_code(c)}" for c in shown] + ([f"- … and {more} more"] if more else []) + [""]
    return "\n".join(lines)


def render_comparison_markdown(comparison: Mapping[str, Any], regressions: Sequence[Mapping[str, Any]] = ()) -> str:
    """`medgate diff --format md`: the comparison of two reports, with its regression gates if asked for."""
    base, current = comparison["baseline"], comparison["current"]
    lines = [f"# medgate diff {md_code(base['run_id'])} → {md_code(current['run_id'])}", ""]
    lines += _gates({"gates": list(regressions)})
    return "\n".join(lines + comparison_lines(comparison))
