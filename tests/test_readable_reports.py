"""The Markdown and HTML renderings of a report: content, escaping, self-containment, and that a
rendering failure never costs the JSON report."""

import copy
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from medgate.compare import compare_reports
from medgate.report import html as html_module
from medgate.report.html import render_html
from medgate.report.markdown import render_comparison_markdown, render_markdown
from medgate.report.readable import sibling, write_readable_outputs
from report_factory import Design, Population, make_report, simulate_records

ATTACK = "<script>document.documentElement.setAttribute('data-pwned','1')</script> | ` * _ & </td>"


def rich_report() -> tuple[dict, dict]:
    """A baseline and a degraded current report, both modes, perturbations, and a hostile question."""
    design = Design(items=12, perturbations=("original", "shuffle"))
    population = Population(design, seed=3)
    old = simulate_records(population, 2.0, np.random.default_rng(1))
    new = simulate_records(population, 2.0, np.random.default_rng(2), drop={("synth-en", "original", "p0"): 3.0})
    for records in (old, new):
        for record in records:
            if record["item_id"] == "00001":
                record["question"] = ATTACK + " " + record["question"]
    # the hostile item flips from right to wrong, so it shows in the flipped-items tables too
    for records, correct in ((old, True), (new, False)):
        record = next(r for r in records if r["case_id"] == "synth-en/00001/original/p0")
        record["correct"] = correct
        record["predicted_label"] = record["gold_label"] if correct else "Z"
    baseline = make_report(old, run_id="base-run")
    current = make_report(new, run_id="new-run", fingerprint="e" * 64)
    current["gates"] = [{"name": "accuracy[synth-en]", "metric": "accuracy", "bound": "min", "threshold": 0.6,
                         "value": 0.5, "n": 72, "ci_low": 0.4, "ci_high": 0.6, "passed": False,
                         "message": "accuracy 0.500 is below the threshold 0.600"}]
    current["comparison"] = compare_reports(baseline, current)
    return baseline, current


@pytest.fixture(scope="module")
def reports() -> tuple[dict, dict]:
    return rich_report()


def test_markdown_has_gates_headline_metrics_regressions_and_flips(reports):
    _, current = reports
    text = render_markdown(current)
    assert text.startswith("# medgate report `new-run`")
    assert "| accuracy\\[synth-en\\] | 0.500 | ≥ 0.600 | 72 | 0.400–0.600 | ❌ **FAIL** |" in text
    assert "Accuracy over all prompts" in text and "| synth-en (loglik) |" in text
    assert "Stability under each perturbation" in text and "JSON-Schema compliance" in text
    assert "### Biggest regressions" in text
    assert re.search(r"### Flipped correct → wrong \(\d+\)", text)
    assert "Comparison with `base-run`" in text


def test_markdown_escapes_item_text(reports):
    _, current = reports
    text = render_markdown(current)
    assert "<script>" not in text and "</td>" not in text
    assert "&lt;script&gt;document.documentElement.setAttribute('data-pwned','1')&lt;/script&gt; \\| \\` \\* \\_ &amp;" \
        in text


LINKS = "[x](javascript:alert(1)) ![i](https://host/x.png) <https://host/a> @octocat www.host.example [r]: https://host"


def test_markdown_makes_no_link_image_mention_or_url_from_item_text_or_model_path():
    baseline, current = copy.deepcopy(rich_report())
    for document in (baseline, current):
        for case in document["cases"]:
            if case["item_id"] == "00001":
                case["question"] = LINKS
    current["comparison"] = compare_reports(baseline, current)
    current["manifest"]["model"]["alias"] = "/models/[m](https://host/m)/@team"
    text = render_markdown(current)
    assert "\\[x\\](javascript:alert(1))" in text  # in the flipped-items table, as text
    assert not re.search(r"(?<!\\)[\[\]]", text)  # no bracket left to open a link or an image
    assert "://" not in text and "www." not in text and not re.search(r"(?<!\\\[)@", text)
    assert "https\\[:\\]//host/x.png" in text and "\\[@\\]octocat" in text
    assert "/models/\\[m\\](https\\[:\\]//host/m)/\\[@\\]team" in text  # the model path, defanged too


def test_diff_markdown_starts_with_the_two_runs(reports):
    _, current = reports
    assert render_comparison_markdown(current["comparison"]).startswith("# medgate diff `base-run` → `new-run`")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_bodies.append(data)


def test_html_is_self_contained_and_escapes_item_text(reports):
    baseline, current = reports
    page = render_html(current, baseline)
    parsed = _Collector()
    parsed.feed(page)
    scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "medgate-data"}, {}]  # ours, and only ours
    assert not [attrs for _, attrs in parsed.tags if {"src", "href"} & attrs.keys()]
    assert not re.search(r"https?://|url\(|@import", page)
    assert "&lt;script&gt;document.documentElement.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;" \
        in page  # the flipped-items table, escaped
    data = json.loads(parsed.script_bodies[0])
    assert any(q.startswith(ATTACK) for q, _ in data["presented"])  # intact once parsed as JSON
    assert "</script" not in parsed.script_bodies[0] and "<script" not in parsed.script_bodies[0]


def test_html_draws_the_charts(reports):
    baseline, current = reports
    page = render_html(current, baseline)
    for kind in ("heatmap", "bars", "deltas"):
        assert f'class="chart chart-{kind}"' in page
    metrics = page.split('<section id="metrics">', 1)[1].split("</section>", 1)[0]
    glance = page.split('<section id="at-a-glance">', 1)[1].split("</section>", 1)[0]
    assert metrics.count('class="chart chart-bars"') == 2  # stability and compliance
    assert glance.count('class="chart chart-bars"') == 2  # accuracy per prompt and per subject
    assert glance.count('class="chart chart-positions"') == 4  # 2 datasets x 2 modes


def test_html_case_table_data_is_compact_and_complete(reports):
    baseline, current = reports
    data = html_module._case_data(current, {c["case_id"]: c["predicted_label"] for c in baseline["cases"]})
    assert len(data["rows"]) == len(current["cases"])
    assert len(data["presented"]) < len(current["cases"]) / 2  # shared by prompts and kept once
    assert data["outcomes"] == ["correct", "wrong", "correct_to_wrong", "wrong_to_correct"]


def test_sibling_never_overwrites_the_json():
    from pathlib import Path

    assert sibling(Path("r/run.json"), ".md") == Path("r/run.md")
    assert sibling(Path("r/run.md"), ".md") == Path("r/run.md.md")


def test_readable_outputs_are_written_beside_the_report(tmp_path, reports):
    baseline, current = reports
    written, errors = write_readable_outputs(current, tmp_path / "run.json", baseline)
    assert errors == [] and [p.name for p in written] == ["run.md", "run.html"]
    assert (tmp_path / "run.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_rendering_failure_is_reported_not_raised(tmp_path, reports, monkeypatch):
    _, current = reports
    broken = copy.deepcopy(current)
    del broken["comparison"]["flips"]  # malformed on purpose: the renderers cannot cope
    written, errors = write_readable_outputs(broken, tmp_path / "run.json")
    assert not (tmp_path / "run.md").exists() and not (tmp_path / "run.html").exists()
    assert written == [] and len(errors) == 2 and "KeyError: 'flips'" in errors[0]


@pytest.mark.parametrize(("output", "kind"), [
    ("A. Renal papillary necrosis", "label only"),
    ("(B)", "label only"),
    ("C", "label only"),
    ("A patient with these findings most likely has renal papillary necrosis.", "prose"),
    ('{"choice": "A"}', "wrong key"),
    ('{"answer": "A", "why": "because"}', "wrong key"),
    ('{"answer": "Z"}', "invalid answer"),
    ('{"answer": "A', "invalid JSON"),
    ("   ", "empty"),
])
def test_compliance_failures_are_grouped_by_what_the_reply_was(output, kind):
    from medgate.report.glance import failure_kind

    assert failure_kind({"raw_output": output}) == kind


def test_glance_counts_positions_and_failures_from_the_cases():
    from medgate.report.glance import compliance_failures, option_probabilities, position_profiles

    options = [{"label": label, "text": label.lower()} for label in "ABCD"]
    cases = [{"case_id": f"d/{i}/original/j0", "dataset": "d", "mode": "generate", "options_presented": options,
              "gold_label": "ABCD"[i % 4], "lenient_answer": "A" if i < 9 else None, "schema_valid": i == 0,
              "raw_output": "A. a" if i else '{"answer": "A"}'} for i in range(10)]
    (profile,) = position_profiles(cases)
    assert profile.chosen == [0.9, 0.0, 0.0, 0.0] and profile.unanswered == pytest.approx(0.1)
    assert profile.gold == [0.3, 0.3, 0.2, 0.2]
    generated, groups = compliance_failures(cases)
    assert generated == 10 and [(g.kind, g.count) for g in groups] == [("label only", 9)]
    probabilities = option_probabilities({"A": -0.1, "B": -3.0, "C": None, "D": -1e9}, "ABCD")
    assert probabilities[2] is None and sum(p for p in probabilities if p is not None) == pytest.approx(1, abs=1e-12)


def test_changes_read_in_points_for_shares_and_as_differences_for_scores_and_distances():
    from medgate.report.summary import change_text

    assert change_text(-0.2083, "accuracy") == "-20.8 pp"
    assert change_text(0.05, "prompt_spread") == "+5.0 pp"  # a difference of two accuracies
    assert change_text(0.381, "brier") == "+0.381"  # 0 to 2: no share
    assert change_text(-0.04, "ece") == "-0.040"
    assert change_text(0.1, "position_bias") == "+0.100"
    assert change_text(None, "brier") == "-"


def test_markdown_text_defangs_links_wherever_they_start_and_drops_bidi_controls():
    import cmarkgfm  # GitHub's own renderer, as a job summary or a PR comment shows the text

    from medgate.report.markdown import md_text

    hostile = "see _www.evil.com _https://evil.com/p 9https://evil.com/a WWW.evil.org mail@evil.com x\u202ey"
    text = md_text(hostile)
    assert "\u202e" not in text
    html = cmarkgfm.github_flavored_markdown_to_html(f"| q |\n|---|\n| {text} |")
    assert "<a" not in html and "evil" in html
