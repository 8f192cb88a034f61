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
from medgate.report.glance import (
    FAILURE_KINDS,
    POSITION_NAMES,
    Share,
    accuracy_by,
    compliance_failures,
    option_probabilities,
    position_profiles,
)
from medgate.report.svg import Bar, Delta, bar_chart, delta_chart, heat_map, position_chart

FLIPS_SHOWN = 200
DELTAS_SHOWN = 80
ROWS_SHOWN = 500  # the case table shows this many matches at a time; the filters narrow it down
SUBJECTS_SHOWN = 40  # the most frequent subjects get a bar; the rest are in the JSON report
SCORE_DIGITS = 4  # the inspector shows log-likelihoods to 3 decimals; the JSON report keeps them whole
PROBABILITY_DIGITS = 9  # rounding error at most 5e-10 per option: the shown probabilities sum to 1 within 1e-8

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
button.expand{border:none;background:none;cursor:pointer;font-size:.9rem;padding:0 .3rem 0 0}
tr.case-detail>td{background:#fafafa}.inspector{padding:.4rem}.inspector table{margin:.3rem 0}
.inspector .question-text{font-weight:600;max-width:60rem}.inspector pre{background:#fff;border:1px solid #ddd;
padding:.4rem;white-space:pre-wrap;max-width:60rem;margin:.2rem 0}tr.gold td{background:#e8f5e9}
td.current{outline:2px solid #1565c0}td.sib{cursor:pointer}.inspector dl{display:grid;
grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0}.inspector dt{font-weight:bold}
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
  var columns = byId("case-table").querySelectorAll("thead th").length;
  var OUTCOMES = {correct: "correct", wrong: "wrong", correct_to_wrong: "correct \\u2192 wrong",
                  wrong_to_correct: "wrong \\u2192 correct"};
  var expanded = {}, byItem = null;
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
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== null && text !== undefined) { node.textContent = String(text); }
    if (className) { node.className = className; }
    return node;
  }
  function cell(row, text, className) {
    var td = el("td", text === null || text === undefined ? "" : text, className);
    row.appendChild(td);
    return td;
  }
  function outcomeOf(r) {
    if (r[9] === "c2w") { return "correct_to_wrong"; }
    if (r[9] === "w2c") { return "wrong_to_correct"; }
    return r[7] ? "correct" : "wrong";
  }
  function answerText(r) { return r[6] === null ? "none" : r[6]; }
  function facts(pairs) {
    var list = el("dl");
    pairs.forEach(function (pair) {
      if (pair[1] === undefined) { return; }
      list.appendChild(el("dt", pair[0]));
      list.appendChild(el("dd", pair[1] === null ? "none" : pair[1], pair[2]));
    });
    return list;
  }
  function optionsTable(r, d) {
    var shown = data.presented[r[4]], loglik = !!d.p;
    var table = el("table", null, "options"), head = el("tr");
    ["label", "option", "gold", "answer"].concat(loglik ? ["probability", "log-likelihood"] : [])
      .forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(el("thead")).appendChild(head);
    var tbody = table.appendChild(el("tbody"));
    shown[1].forEach(function (option, k) {
      var row = el("tr", null, option[0] === r[5] ? "gold" : "");
      cell(row, option[0]);
      cell(row, option[1]);
      cell(row, option[0] === r[5] ? "\\u2713 gold" : "");
      var marks = [];
      if (option[0] === r[6]) { marks.push(r[11] === "generate" ? "strict" : "chosen"); }
      if (r[11] === "generate" && d.l === option[0]) { marks.push("lenient"); }
      cell(row, marks.join(", "));
      if (loglik) {
        var p = d.p[k], td = cell(row, p === null ? "\\u2013" : p.toFixed(4), "num prob");
        if (p !== null) { td.setAttribute("data-prob", String(p)); }
        cell(row, d.s[k] === null ? "\\u2013" : d.s[k].toFixed(3), "num");
      }
      tbody.appendChild(row);
    });
    return table;
  }
  function siblings(r) {
    if (byItem === null) {
      byItem = {};
      data.rows.forEach(function (other, i) {
        var key = other[1] + "/" + other[10];
        (byItem[key] = byItem[key] || []).push(i);
      });
    }
    var members = byItem[r[1] + "/" + r[10]], prompts = [], perturbations = [], at = {};
    members.forEach(function (i) {
      var o = data.rows[i];
      if (prompts.indexOf(o[3]) < 0) { prompts.push(o[3]); }
      if (perturbations.indexOf(o[2]) < 0) { perturbations.push(o[2]); }
      at[o[2] + "/" + o[3]] = i;
    });
    prompts.sort(function (a, b) { return a - b; });
    perturbations.sort(function (a, b) { return a - b; });
    var table = el("table", null, "siblings"), head = el("tr");
    head.appendChild(el("th", "perturbation \\\\ prompt"));
    prompts.forEach(function (p) { head.appendChild(el("th", data.prompts[p])); });
    table.appendChild(el("thead")).appendChild(head);
    var tbody = table.appendChild(el("tbody"));
    perturbations.forEach(function (q) {
      var row = el("tr");
      row.appendChild(el("th", data.perturbations[q]));
      prompts.forEach(function (p) {
        var i = at[q + "/" + p];
        if (i === undefined) { cell(row, "\\u2013"); return; }
        var o = data.rows[i];
        var lenient = o[11] === "generate" && o[12].l !== undefined && o[12].l !== o[6] ? ", lenient " + o[12].l : "";
        var td = cell(row, answerText(o) + lenient + (o[7] ? " \\u2713" : " \\u2717") + " (gold " + o[5] + ")",
                      "sib" + (o[0] === r[0] ? " current" : ""));
        td.title = o[0];
        td.addEventListener("click", function () { openCase(o[0]); });
      });
      tbody.appendChild(row);
    });
    return table;
  }
  function inspector(r) {
    var d = r[12], box = el("div", null, "inspector");
    box.setAttribute("data-case", r[0]);
    box.appendChild(el("p", data.presented[r[4]][0], "question-text"));
    box.appendChild(optionsTable(r, d));
    var pairs = [["mode", r[11]]];
    if (r[11] === "generate") {
      pairs.push(["strict parse", r[6]], ["lenient parse", d.l === undefined ? null : d.l],
                 ["lenient method", d.m === undefined ? null : d.m], ["JSON-Schema valid", d.v ? "yes" : "no"],
                 ["stop reason", d.r], ["generated tokens", d.g]);
    }
    pairs.push(["truncated prompt tokens", d.t || 0]);
    if (d.n) { pairs.push(["non-finite scores", "yes: the case is left out of the metrics"]); }
    box.appendChild(facts(pairs));
    if (r[11] === "generate") {
      box.appendChild(el("h4", "Raw output"));
      box.appendChild(el("pre", d.o === undefined ? "(not recorded)" : d.o, "raw-output"));
    }
    if (d.pt !== undefined) {
      var details = el("details");
      details.appendChild(el("summary", "Prompt text (as given to the tokenizer)"));
      details.appendChild(el("pre", d.pt, "prompt-text"));
      box.appendChild(details);
    }
    box.appendChild(el("h4", "The same item under every perturbation and prompt"));
    box.appendChild(siblings(r));
    return box;
  }
  function openCase(caseId) {
    expanded[caseId] = true;
    search.value = caseId;
    dataset.value = perturbation.value = outcome.value = "";
    render();
    // Compared as text, not put in a selector: a case id from the address may hold any character.
    var boxes = document.querySelectorAll(".inspector");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].getAttribute("data-case") === caseId) { boxes[i].scrollIntoView(); break; }
    }
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
      var question = data.presented[r[4]][0];
      if (q && question.toLowerCase().indexOf(q) < 0 && r[0].toLowerCase().indexOf(q) < 0) { return; }
      matched += 1;
      if (shown >= data.limit) { return; }
      shown += 1;
      var row = el("tr", null, "outcome-" + kind);
      var first = cell(row, "");
      var toggle = el("button", expanded[r[0]] ? "\\u25be" : "\\u25b8", "expand");
      toggle.setAttribute("aria-expanded", expanded[r[0]] ? "true" : "false");
      toggle.title = "inspect this case";
      first.appendChild(toggle);
      first.appendChild(document.createTextNode(r[0]));
      cell(row, data.datasets[r[1]]);
      cell(row, data.perturbations[r[2]]);
      cell(row, data.prompts[r[3]]);
      cell(row, question, "question");
      cell(row, r[5]);
      cell(row, answerText(r));
      if (data.compared) { cell(row, r[8] === null ? "\\u2013" : r[8]); }
      cell(row, OUTCOMES[kind]);
      body.appendChild(row);
      var detail = null;
      function show() {
        detail = el("tr", null, "case-detail");
        var td = cell(detail, "");
        td.colSpan = columns;
        td.appendChild(inspector(r));
        row.parentNode.insertBefore(detail, row.nextSibling);
      }
      if (expanded[r[0]]) { show(); }
      toggle.addEventListener("click", function () {
        if (expanded[r[0]]) {
          delete expanded[r[0]];
          if (detail) { detail.parentNode.removeChild(detail); detail = null; }
        } else {
          expanded[r[0]] = true;
          show();
          history.replaceState(null, "", "#case=" + encodeURIComponent(r[0]));
        }
        toggle.textContent = expanded[r[0]] ? "\\u25be" : "\\u25b8";
        toggle.setAttribute("aria-expanded", expanded[r[0]] ? "true" : "false");
      });
    });
    count.textContent = "Showing " + shown + " of " + matched + " matching cases (" + data.rows.length + " in all).";
  }
  [dataset, perturbation, outcome].forEach(function (node) { node.addEventListener("change", render); });
  search.addEventListener("input", render);
  var linked = null;
  if (location.hash.indexOf("#case=") === 0) {
    try { linked = decodeURIComponent(location.hash.slice(6)); } catch (e) { linked = null; }  // "#case=%"
  }
  if (linked !== null) {
    openCase(linked);
  } else {
    render();
  }
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
            [[_e(cell_label(c)), value_text(c["baseline"]), value_text(c["current"]), _e(change_text(c["delta"], c["metric"])),
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


def _case_detail(case: Mapping[str, Any]) -> dict[str, Any]:
    """What the inspector shows beyond the row, with short keys (a report may hold 50,000 cases)."""
    detail: dict[str, Any] = {}
    scores = case.get("scores")
    if isinstance(scores, dict):
        labels = [o["label"] for o in case["options_presented"]]
        detail["s"] = [None if scores.get(label) is None else round(scores[label], SCORE_DIGITS) for label in labels]
        detail["p"] = [None if p is None else round(p, PROBABILITY_DIGITS)
                       for p in option_probabilities(scores, labels)]
    if case.get("mode") == "generate":
        for key, field in (("o", "raw_output"), ("l", "lenient_answer"), ("m", "lenient_method"),
                           ("v", "schema_valid"), ("r", "stop_reason"), ("g", "generated_tokens")):
            if field in case:
                detail[key] = case[field]
    for key, field in (("t", "truncated_tokens"), ("n", "non_finite"), ("pt", "prompt_text")):
        if case.get(field):
            detail[key] = case[field]
    return detail


def _case_data(document: Document, baseline_answers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Column-compact rows: repeated strings (datasets, questions with their options, ...) are stored once
    and indexed; each row ends with what the case inspector shows when the row is expanded."""
    tables: dict[str, dict[Any, int]] = {"datasets": {}, "perturbations": {}, "prompts": {}}
    presented: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def index(table: str, value: str) -> int:
        return tables[table].setdefault(value, len(tables[table]))

    def shown(case: Mapping[str, Any]) -> int:
        options = tuple((o["label"], o["text"]) for o in case["options_presented"])
        return presented.setdefault((case["question"], options), len(presented))

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
                     index("prompts", case["prompt"]), shown(case), case["gold_label"],
                     case.get("predicted_label"), 1 if case.get("correct") else 0, baseline,
                     changes.get(case_id, ""), case["item_id"], case["mode"], _case_detail(case)])
    outcomes = ["correct", "wrong"] + ([CORRECT_TO_WRONG, WRONG_TO_CORRECT] if comparison else [])
    return {**{name: list(values) for name, values in tables.items()},
            "presented": [[question, [list(o) for o in options]] for question, options in presented],
            "rows": rows, "outcomes": outcomes, "compared": baseline_answers is not None, "limit": ROWS_SHOWN}


def _share_bars(shares: list[Share]) -> list[Bar]:
    return [Bar(f"{s.label} (n={s.n})", s.value, *s.interval) for s in shares]


def _glance(document: Document) -> str:
    """Position bias, accuracy per prompt and per subject, and compliance failures by kind."""
    cases = document.get("cases", [])
    if not cases:
        return ""
    parts = ['<section id="at-a-glance"><h2>At a glance</h2>',
             "<h3>Answer position against gold position</h3><p>Per dataset and mode, the share of answers at "
             "each option position (generate mode: the lenient parse) beside the share of gold answers there. "
             "A model that prefers a position shows a tall bar against a flatter gold profile.</p>",
             '<div class="charts" id="position-charts">']
    for profile in position_profiles(cases):
        names = [POSITION_NAMES[i] if i < len(POSITION_NAMES) else str(i + 1) for i in range(len(profile.chosen))]
        unanswered = f"; {profile.unanswered:.0%} unanswered" if profile.unanswered else ""
        parts.append(position_chart(names, profile.chosen, profile.gold,
                                    f"{profile.title}: {profile.cases} cases{unanswered}"))
    parts.append("</div><div class=\"charts\">")
    parts.append(bar_chart(_share_bars(accuracy_by(cases, "dataset", "prompt")),
                           "Accuracy per prompt (all perturbations; 95% Wilson intervals)"))
    subjects = accuracy_by(cases, "dataset", "subject")
    shown = sorted(sorted(subjects, key=lambda s: -s.n)[:SUBJECTS_SHOWN], key=lambda s: s.label)
    title = "Accuracy per subject (95% Wilson intervals)" + (
        f": the {len(shown)} largest of {len(subjects)}" if len(shown) < len(subjects) else "")
    parts.append(bar_chart(_share_bars(shown), title))
    parts.append("</div>")
    generated, failures = compliance_failures(cases)
    if generated:
        parts.append(f"<h3>Compliance failures ({sum(f.count for f in failures)} of {generated} generate-mode "
                     f"cases)</h3>")
        parts.append(_table(["kind", "cases", "share", "what it is", "example case", "its output"], [
            [_e(f.kind), str(f.count), f"{f.share:.1%}", _e(FAILURE_KINDS[f.kind]), _e(f.example),
             f"<code>{_e(limited_text(f.example_output))}</code>"] for f in failures], "compliance-failures")
                     if failures else "<p>Every generated reply was a valid JSON answer.</p>")
    parts.append("</section>")
    return "".join(parts)


def limited_text(text: str, chars: int = 120) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _cases(document: Document, baseline_answers: Mapping[str, Any] | None) -> str:
    header = ["case (▸ inspect)", "dataset", "perturbation", "prompt", "question", "gold", "answer"]
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
        _glance(document),
        _comparison(document["comparison"]) if document.get("comparison") else "",
        _missing(document),
        _cases(document, baseline_answers),
        f"<script>{SCRIPT}</script></body></html>\n",
    ])
