"""The model table as Markdown, HTML, CSV or LaTeX.

Each cell: the value with its 95% Wilson interval; in a row compared with the reference, below it the
paired difference (bootstrap interval) and the Holm-corrected McNemar p, with `*` when significant.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from html import escape
from itertools import groupby

from medgate.report.markdown import md_text
from medgate.table.build import Column, Entry, ModelTable, Row

SIGNIFICANT = "*"
NOT_COMPARED = "–"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return NOT_COMPARED
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return NOT_COMPARED
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def value_text(entry: Entry) -> str:
    value = entry.value
    if value is None or value.value is None:
        return NOT_COMPARED
    return f"{value.value:.3f} [{_number(value.ci_low)}, {_number(value.ci_high)}]"


def difference_text(entry: Entry) -> str:
    """The difference against the reference; empty in the reference row and where there is none."""
    difference = entry.difference
    if difference is None:
        return ""
    if difference.incomparable:
        return "incomparable"
    if difference.delta is None:
        return "no shared units"
    mark = f" {SIGNIFICANT}" if difference.significant else ""
    return (f"Δ {_number(difference.delta, True)} [{_number(difference.ci_low, True)}, "
            f"{_number(difference.ci_high, True)}], p {_p(difference.p_adjusted)}{mark}")


def _legend(table: ModelTable) -> str:
    base = "Each cell: value [95% Wilson interval]."
    if table.reference is None:
        return base
    return (f"{base} Against the reference {table.reference}: Δ, the paired difference [95% paired bootstrap "
            f"interval], and p, the exact McNemar p-value Holm-corrected across the {table.tested} differences of "
            f"the table; {SIGNIFICANT} marks p < {table.alpha}. Incomparable: the block changed in more than the "
            f"model (item, prompt or perturbation), so it is not compared.")


def _row_name(row: Row) -> str:
    return f"{row.label} (reference)" if row.reference else row.label


def render_markdown(table: ModelTable) -> str:
    def cell(entry: Entry) -> str:
        parts = [value_text(entry), difference_text(entry)]
        return "<br>".join(p for p in parts if p).replace("|", "\\|")

    header = ["model"] + [f"{c.group} · {c.dataset}: {c.title}" for c in table.columns]
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    for row in table.rows:
        # A model's name comes from a folder name: plain text, as the run report shows it.
        lines.append("| " + " | ".join([md_text(_row_name(row))]
                                       + [cell(row.entries[c]) for c in table.columns]) + " |")
    warned = [f"- ⚠️ {md_text(warning)}" for warning in table.warnings]
    return "\n".join(["# Models compared", "", *lines, "", _legend(table), "", *warned, *([""] if warned else [])])


def _spans(columns: list[Column], key: Callable[[Column], str]) -> list[tuple[str, int]]:
    return [(name, len(list(members))) for name, members in groupby(columns, key=key)]


STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5rem}table{border-collapse:collapse;font-size:.85rem}"
         "th,td{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top}th{background:#f5f5f5}"
         "td{font-variant-numeric:tabular-nums;white-space:nowrap}.diff{display:block;color:#555}"
         ".sig{color:#c62828;font-weight:bold}.incomparable{color:#8a6d00}tr.reference{background:#fafafa}")


def render_html(table: ModelTable) -> str:
    e = escape
    groups = "".join(f'<th colspan="{n}">{e(name)}</th>' for name, n in _spans(table.columns, lambda c: c.group))
    datasets = "".join(f'<th colspan="{n}">{e(name)}</th>'
                       for name, n in _spans(table.columns, lambda c: f"{c.group}\0{c.dataset}"))
    datasets = datasets.replace("\0", " · ")
    metrics = "".join(f"<th>{e(c.title)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            entry = row.entries[column]
            difference = difference_text(entry)
            kind = ("sig" if entry.difference is not None and entry.difference.significant else
                    "incomparable" if entry.difference is not None and entry.difference.incomparable else "")
            below = f'<span class="diff {kind}">{e(difference)}</span>' if difference else ""
            cells.append(f"<td>{e(value_text(entry))}{below}</td>")
        body.append(f'<tr class="{"reference" if row.reference else "model"}"><th>{e(_row_name(row))}</th>'
                    + "".join(cells) + "</tr>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>medgate table</title>"
            f"<style>{STYLE}</style></head><body><h1>Models compared</h1><table id=\"model-table\"><thead>"
            f'<tr><th rowspan="3">model</th>{groups}</tr><tr>{datasets}</tr><tr>{metrics}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table><p>{e(_legend(table))}</p></body></html>\n")


CSV_FIELDS = ("value", "ci_low", "ci_high", "n", "delta", "delta_ci_low", "delta_ci_high", "p", "p_holm",
              "significant", "comparable")


def _csv_fields(entry: Entry) -> list[object]:
    value, difference = entry.value, entry.difference
    own: list[object] = [value.value, value.ci_low, value.ci_high, value.n] if value is not None else [None] * 4
    if difference is None:
        return own + [None] * 7
    return own + [difference.delta, difference.ci_low, difference.ci_high, difference.p_value,
                  difference.p_adjusted, difference.significant, not difference.incomparable]


def render_csv(table: ModelTable) -> str:
    """Wide and numeric: per column its value, interval, n and (against the reference) the difference."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "path", "reference"] + [f"{c.label} {name}" for c in table.columns
                                                      for name in CSV_FIELDS])
    for row in table.rows:
        writer.writerow([row.label, row.path, row.reference]
                        + ["" if v is None else v for c in table.columns for v in _csv_fields(row.entries[c])])
    return out.getvalue()


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}", "Δ": r"$\Delta$",
                 "–": "--"}


def _tex(text: str) -> str:
    # White space of any kind as one space: a newline in a folder name would end the table row.
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in " ".join(text.split()))


def render_latex(table: ModelTable) -> str:
    """A booktabs tabular; the difference sits under the value (\\shortstack), significant ones in bold."""
    def cell(entry: Entry) -> str:
        difference = difference_text(entry)
        if not difference:
            return _tex(value_text(entry))
        shown = _tex(difference)
        if entry.difference is not None and entry.difference.significant:
            shown = rf"\textbf{{{shown}}}"
        return rf"\shortstack[l]{{{_tex(value_text(entry))}\\ {shown}}}"

    spans = _spans(table.columns, lambda c: f"{c.group} · {c.dataset}")
    lines = [r"\begin{tabular}{l" + "l" * len(table.columns) + "}", r"\toprule",
             "model & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{_tex(name)}}}" for name, n in spans) + r" \\",
             " & " + " & ".join(_tex(c.title) for c in table.columns) + r" \\", r"\midrule"]
    lines += [_tex(_row_name(row)) + " & " + " & ".join(cell(row.entries[c]) for c in table.columns) + r" \\"
              for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", "% " + _legend(table)]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[ModelTable], str]] = {
    "md": render_markdown, "html": render_html, "csv": render_csv, "latex": render_latex}
