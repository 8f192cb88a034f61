"""The self-contained HTML report written next to every JSON report.

One file, viewable offline: inline CSS, inline SVG charts (svg.py), and a little inline JavaScript
that filters the per-case table. Text from reports is escaped on the way in: server-side with
`html.escape`; the case table's data travels as JSON inside a `<script type="application/json">`
block with `<`, `>` and `&` written as \\u escapes (so no item text can close the block), and the
script only ever sets `textContent`, never HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from medgate.compare.comparison import CORRECT_TO_WRONG, WRONG_TO_CORRECT
from medgate.report.document import json_text
from medgate.report.summary import (
    Document,
    accuracy_grid,
    biggest_regressions,
    cell_label,
    change_text,
    compared_cells,
    flips_by_direction,
    gate_rows,
    headline,
    interval_text,
    limited,
    p_text,
    per_block,
    value_text,
)
from medgate.report.svg import Bar, Delta, bar_chart, delta_chart, heat_map

FLIPS_SHOWN = 200
DELTAS_SHOWN = 80
ROWS_SHOWN = 500  # the case table shows this many matches at a time; the filters narrow it down

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}.skip{color:#777}
.warn{color:#8a6d00}.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
.filters{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;margin:.5rem 0}
td.question{max-width:40rem}dl.head{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.head dt{font-weight:bold}.status-passed{color:#2e7d32}.status-failed,.status-incomplete{color:#c62828}
"""

SCRIPT = """
(function () {
  "use strict";
  var root = document.documentElement;
  window.addEventListener("error", function (event) {
    root.setAttribute("data-js-errors", String(event.message || "error"));
  });
  var data = JSON.parse(document.getElementById("medgate-data").textContent);
  var byId = function (id) { return document.getElementById(id); };
  var dataset = byId("filter-dataset"), perturbation = byId("filter-perturbation");
  var outcome = byId("filter-outcome"), search = byId("filter-text");
  var body = byId("case-rows"), count = byId("case-count");
  var OUTCOMES = {correct: "correct", wrong: "wrong", correct_to_wrong: "correct \\u2192 wrong",
                  wrong_to_correct: "wrong \\u2192 correct"};
  function addOptions(select, values, labels) {
    values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = labels ? labels[value] : value;
      select.appendChild(option);
    });
  }
  addOptions(dataset, data.datasets);
  addOptions(perturbation, data.perturbations);
  addOptions(outcome, data.outcomes, OUTCOMES);
  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) { td.className = className; }
    row.appendChild(td);
  }
  function outcomeOf(r) {
    if (r[9] === "c2w") { return "correct_to_wrong"; }
    if (r[9] === "w2c") { return "wrong_to_correct"; }
    return r[7] ? "correct" : "wrong";
  }
  function render() {
    var d = dataset.value, p = perturbation.value, o = outcome.value, q = search.value.toLowerCase();
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var matched = 0, shown = 0;
    data.rows.forEach(function (r) {
      var kind = outcomeOf(r);
      if (d && data.datasets[r[1]] !== d) { return; }
      if (p && data.perturbations[r[2]] !== p) { return; }
      if (o && !(o === kind || (o === "correct" && kind === "wrong_to_correct") ||
                 (o === "wrong" && kind === "correct_to_wrong"))) { return; }
      var question = data.questions[r[4]];
      if (q && question.toLowerCase().indexOf(q) < 0 && r[0].toLowerCase().indexOf(q) < 0) { return; }
      matched += 1;
      if (shown >= data.limit) { return; }
      shown += 1;
      var row = document.createElement("tr");
      row.className = "outcome-" + kind;
      cell(row, r[0]);
      cell(row, data.datasets[r[1]]);
      cell(row, data.perturbations[r[2]]);
      cell(row, data.prompts[r[3]]);
      cell(row, question, "question");
      cell(row, r[5]);
      cell(row, r[6] === null ? "none" : r[6]);
      if (data.compared) { cell(row, r[8] === null ? "\\u2013" : r[8]); }
      cell(row, OUTCOMES[kind]);
      body.appendChild(row);
    });
    count.textContent = "Showing " + shown + " of " + matched + " matching cases (" + data.rows.length + " in all).";
  }
  [dataset, perturbation, outcome].forEach(function (el) { el.addEventListener("change", render); });
  search.addEventListener("input", render);
  render();
  root.setAttribute("data-ready", "1");
})();
"""


def _json_for_script(value: Any) -> str:
    text = json_text(value)  # strict: the page's JSON.parse refuses NaN
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    """`rows` hold already-escaped HTML fragments."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _result(gate: Mapping[str, Any]) -> str:
    kind, text = {True: ("pass", "PASS"), False: ("fail", "FAIL"), None: ("skip", "SKIP")}[gate["passed"]]
    return f'<span class="{kind}">{text}</span>'


def _gates(document: Document) -> str:
    thresholds, regressions = gate_rows(document)
    parts = []
    if thresholds:
        parts.append('<section id="gates"><h2>Gates</h2>' + _table(
            ["gate", "value", "bound", "n", "95% CI", "result", "message"],
            [[_e(g["name"]), value_text(g["value"]), _e(f"{'≥' if g.get('bound') == 'min' else '≤'} "
                                                         f"{g['threshold']:.3f}"), _e(g.get("n")),
              "-" if g.get("ci_low") is None else f"{g['ci_low']:.3f}–{g['ci_high']:.3f}", _result(g),
              _e(g.get("message"))] for g in thresholds]) + "</section>")
    if regressions:
        parts.append('<section id="regression-gates"><h2>Regression gates</h2>' + _table(
            ["gate", "baseline", "current", "change", "95% CI", "p (Holm)", "result", "message"],
            [[_e(g["name"]), value_text(g["baseline"]), value_text(g["current"]), _e(change_text(g["value"])),
              _e(interval_text(g["ci_low"], g["ci_high"])), p_text(g["p_adjusted"]), _result(g), _e(g["message"])]
             for g in regressions]) + "</section>")
    return "".join(parts)


def _charts(document: Document) -> str:
    grid = accuracy_grid(document)
    charts = []
    if grid.rows:
        values = {key: float(entry["value"]) for key, entry in grid.values.items()}
        charts.append(heat_map(grid.rows, grid.columns, values, "Accuracy per dataset x perturbation (all prompts)"))
    for name, title, missing in (
            ("stability", "Stability per perturbation", "No perturbed cases in this run: stability not measured."),
            ("compliance", "JSON-Schema compliance", "No generate-mode cases in this run: compliance not measured.")):
        rows = per_block(document, name)
        if rows:
            charts.append(bar_chart([Bar(label, float(m["value"]), m["ci_low"], m["ci_high"]) for label, m in rows],
                                    f"{title} (95% Wilson intervals)"))
        else:
            charts.append(f'<p class="note" id="no-{name}">{_e(missing)}</p>')
    return f'<section id="metrics"><h2>Metrics</h2><div class="charts">{"".join(charts)}</div></section>'


def _flip_table(flips: Sequence[Mapping[str, Any]]) -> str:
    return _table(["case", "question", "gold", "baseline", "current"], [
        [_e(f["case_id"]), _e(f["question"]), _e(f["gold_label"]), _e(f["baseline_answer"] or "none"),
         _e(f["current_answer"] or "none")] for f in flips])


def _comparison(comparison: Mapping[str, Any]) -> str:
    cases, flips, method = comparison["cases"], comparison["flips"], comparison["method"]
    base, current = comparison["baseline"], comparison["current"]
    significant = sum(1 for c in comparison["cells"] if c.get("significant"))
    items = [
        f"Baseline <code>{_e(base['run_id'])}</code>: {_e(base['model'])} "
        f"<code>{_e((base['fingerprint'] or '-')[:12])}</code> ({_e(base['path'] or '-')}); current "
        f"<code>{_e(current['run_id'])}</code>: {_e(current['model'])} "
        f"<code>{_e((current['fingerprint'] or '-')[:12])}</code>"
        + (" &mdash; the same checkpoint" if comparison["same_checkpoint"] else ""),
        f"{cases['common']} shared cases compared; {len(cases['only_in_baseline'])} only in the baseline, "
        f"{len(cases['only_in_current'])} only in the current run",
        f"Flipped: <strong>{flips[CORRECT_TO_WRONG]} correct &rarr; wrong</strong>, "
        f"{flips[WRONG_TO_CORRECT]} wrong &rarr; correct",
        f"{significant} of {method['cells_tested']} cells changed significantly ({_e(method['test'])}, "
        f"Holm-corrected, alpha {method['alpha']}); intervals: {_e(method['interval'])}, "
        f"{method['replicates']} replicates",
    ]
    items += [f'<span class="warn">Incomparable {_e("/".join(b[k] for k in ("dataset", "perturbation", "prompt", "mode")))}'
              f": {_e('; '.join(b['reasons']))}</span>" for b in comparison["incomparable"]]
    parts = ['<section id="comparison"><h2>Comparison</h2><ul>', "".join(f"<li>{i}</li>" for i in items), "</ul>"]
    cells = compared_cells(comparison)
    ranked = sorted(cells, key=lambda c: (not c["significant"], -abs(c["delta"])))
    shown, more = limited(ranked, DELTAS_SHOWN)
    if shown:
        shown.sort(key=lambda c: (c["metric"], c["dataset"], c["perturbation"], c["prompt"], c["mode"]))
        parts.append(delta_chart([Delta(cell_label(c), c["delta"], c["ci_low"], c["ci_high"], c["significant"])
                                  for c in shown], "Change per cell (paired 95% bootstrap interval; * significant)"))
        if more:
            parts.append(f"<p>{more} more cells (smaller, non-significant changes) are in the JSON report.</p>")
    worst = biggest_regressions(comparison)
    if worst:
        parts.append("<h3>Biggest regressions</h3>" + _table(
            ["cell", "baseline", "current", "change", "95% CI", "p", "p (Holm)", "significant"],
            [[_e(cell_label(c)), value_text(c["baseline"]), value_text(c["current"]), _e(change_text(c["delta"])),
              _e(interval_text(c["ci_low"], c["ci_high"])), p_text(c["p_value"]), p_text(c["p_adjusted"]),
              "yes" if c["significant"] else "no"] for c in worst], "regressions"))
    for direction, title in ((CORRECT_TO_WRONG, "correct &rarr; wrong"), (WRONG_TO_CORRECT, "wrong &rarr; correct")):
        shown_flips, more = limited(flips_by_direction(comparison, direction), FLIPS_SHOWN)
        if shown_flips:
            parts.append(f"<h3>Flipped {title} ({flips[direction]})</h3>" + _flip_table(shown_flips))
            if more:
                parts.append(f"<p>&hellip; and {more} more: filter the case table below.</p>")
    parts.append("</section>")
    return "".join(parts)


def _case_data(document: Document, baseline_answers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Column-compact rows: repeated strings (datasets, questions, ...) are stored once and indexed."""
    tables: dict[str, dict[str, int]] = {"datasets": {}, "perturbations": {}, "prompts": {}, "questions": {}}

    def index(table: str, value: str) -> int:
        return tables[table].setdefault(value, len(tables[table]))

    comparison = document.get("comparison")
    changes = {f["case_id"]: ("c2w" if f["direction"] == CORRECT_TO_WRONG else "w2c")
               for f in (comparison or {}).get("flips", {}).get("items", [])}
    rows = []
    for case in document.get("cases", []):
        case_id = case["case_id"]
        baseline = None
        if baseline_answers is not None and case_id in baseline_answers:
            baseline = baseline_answers[case_id] or "none"
        rows.append([case_id, index("datasets", case["dataset"]), index("perturbations", case["perturbation"]),
                     index("prompts", case["prompt"]), index("questions", case["question"]), case["gold_label"],
                     case.get("predicted_label"), 1 if case.get("correct") else 0, baseline,
                     changes.get(case_id, "")])
    outcomes = ["correct", "wrong"] + ([CORRECT_TO_WRONG, WRONG_TO_CORRECT] if comparison else [])
    return {**{name: list(values) for name, values in tables.items()}, "rows": rows, "outcomes": outcomes,
            "compared": baseline_answers is not None, "limit": ROWS_SHOWN}


def _cases(document: Document, baseline_answers: Mapping[str, Any] | None) -> str:
    header = ["case", "dataset", "perturbation", "prompt", "question", "gold", "answer"]
    header += ["baseline answer"] if baseline_answers is not None else []
    header += ["outcome"]
    filters = (
        '<div class="filters">'
        '<label>Dataset <select id="filter-dataset"><option value="">all</option></select></label>'
        '<label>Perturbation <select id="filter-perturbation"><option value="">all</option></select></label>'
        '<label>Outcome <select id="filter-outcome"><option value="">all</option></select></label>'
        '<label>Search <input id="filter-text" type="search" placeholder="question or case id"></label>'
        "</div>"
    )
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (f'<section id="cases"><h2>Cases</h2>{filters}<p id="case-count"></p>'
            f'<noscript><p>The case table needs JavaScript; the JSON report holds every case.</p></noscript>'
            f'<table id="case-table"><thead><tr>{head}</tr></thead><tbody id="case-rows"></tbody></table>'
            f'<script type="application/json" id="medgate-data">{_json_for_script(_case_data(document, baseline_answers))}'
            f"</script></section>")


def _missing(document: Document) -> str:
    missing = document.get("missing_cases", [])
    if not missing:
        return ""
    shown, more = limited(missing, FLIPS_SHOWN)
    items = "".join(f"<li><code>{_e(c)}</code></li>" for c in shown) + (f"<li>&hellip; and {more} more</li>"
                                                                       if more else "")
    return (f'<section id="missing"><h2 class="fail">Missing cases ({len(missing)})</h2>'
            f"<p>These cases have no result (a worker died or the run stopped): the run is incomplete.</p>"
            f"<ul>{items}</ul></section>")


def render_html(document: Document, baseline: Document | None = None) -> str:
    """The page for a report; with `baseline` (the compared report) the case table shows its answers too."""
    baseline_answers = None
    if baseline is not None:
        baseline_answers = {c["case_id"]: c.get("predicted_label") for c in baseline.get("cases", [])}
    status_class = f' class="status-{_e(document.get("status", ""))}"'
    head_items = "".join(
        f"<dt>{_e(label)}</dt><dd{status_class if label == 'Status' else ''}>{_e(text)}</dd>"
        for label, text in headline(document))
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>medgate report {_e(document.get('run_id', ''))}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>medgate report <code>{_e(document.get('run_id', ''))}</code></h1>",
        f'<dl class="head">{head_items}</dl></header>',
        _gates(document),
        _charts(document),
        _comparison(document["comparison"]) if document.get("comparison") else "",
        _missing(document),
        _cases(document, baseline_answers),
        f"<script>{SCRIPT}</script></body></html>\n",
    ])
