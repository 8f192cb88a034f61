"""Comparing two reports: units behind each metric, compatibility, paired cells, flips, regression gates."""

import copy

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from medgate.compare import (
    RegressionCell,
    RegressionRuleError,
    compare_reports,
    evaluate_regression,
    evaluate_rules,
    parse_regression_rule,
    regression_cells,
)
from medgate.compare.outcomes import unit_outcomes
from medgate.compare.regression import check_unique
from medgate.metrics import compute_metrics
from medgate.metrics.catalogue import CATALOGUE, PAIRED
from medgate.schemas import load_schema
from report_factory import Design, Population, make_report, simulate_records

DESIGN = Design(datasets=("synth-en", "synth-es"), items=30, perturbations=("original", "shuffle", "typos"))


def comparison_errors(comparison: dict) -> list[str]:
    schema = load_schema("report")
    validator = Draft202012Validator({**schema["$defs"]["comparison"], "$defs": schema["$defs"]})
    return [error.message for error in validator.iter_errors(comparison)]


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(DESIGN, seed=1)


@pytest.fixture(scope="module")
def records(population) -> list[dict]:
    return simulate_records(population, skill=1.0, rng=np.random.default_rng(2))


def test_a_non_finite_case_counts_in_no_metric_cell_and_no_unit(records):
    """Metrics and the comparison's units are one computation; a NaN-scored case is in neither."""
    flagged = copy.deepcopy(records)
    flagged[3]["non_finite"] = True
    without = [r for i, r in enumerate(copy.deepcopy(records)) if i != 3]
    assert compute_metrics(flagged) == compute_metrics(without)
    assert {c: u.units for c, u in unit_outcomes(flagged).items()} == {c: u.units for c, u in
                                                                         unit_outcomes(without).items()}
    assert compute_metrics(flagged) != compute_metrics(records)  # the case did count before
    names = {m.name for m in compute_metrics(records)}
    # every metric of the catalogue but those that need rotations or reorderings (the design has neither)
    assert names == set(CATALOGUE) - {"circular_accuracy", "order_sensitivity_gap"}


def test_a_report_compared_with_itself_changes_nothing(records):
    report = make_report(records)
    comparison = compare_reports(report, copy.deepcopy(report))
    assert comparison_errors(comparison) == []
    assert comparison["same_checkpoint"] is True
    assert comparison["flips"]["correct_to_wrong"] == comparison["flips"]["wrong_to_correct"] == 0
    assert comparison["incomparable"] == []
    tested = [c for c in comparison["cells"] if c["p_value"] is not None]
    assert len(tested) == comparison["method"]["cells_tested"] > 50
    assert all(c["delta"] == 0 and c["p_adjusted"] == 1.0 and not c["significant"] for c in tested)
    assert all(c["ci_low"] == c["ci_high"] == 0 for c in comparison["cells"] if c["ci_low"] is not None)
    verdicts = evaluate_rules([parse_regression_rule(f"{m}:0pp") for m in ("accuracy", "stability", "compliance")],
                              comparison)
    assert verdicts and all(v.passed for v in verdicts)


def test_single_prompt_aggregates_are_not_tested_twice(population):
    design = Design(datasets=("synth-en",), items=20, perturbations=("original",), prompts=(("p0", "loglik"),))
    few = simulate_records(Population(design, seed=1), 1.0, np.random.default_rng(0))
    report = make_report(few)
    cells = compare_reports(report, report)["cells"]
    assert [(c["metric"], c["prompt"]) for c in cells if c["metric"] in PAIRED] == [("accuracy", "p0")]
    assert {(c["metric"], c["prompt"]) for c in cells} == {(m, "p0") for m in ("accuracy", "position_bias", "ece", "brier")}


def test_flips_and_the_accuracy_cell_are_exact(records):
    baseline = make_report(records)
    changed = copy.deepcopy(records)
    target = [r for r in changed if r["dataset"] == "synth-en" and r["perturbation"] == "original"
              and r["prompt"] == "p0"]
    right = [r for r in target if r["correct"]]
    wrong = [r for r in target if not r["correct"]]
    for r in right[:6]:
        r["correct"], r["predicted_label"] = False, "Z"
    for r in wrong[:1]:
        r["correct"], r["predicted_label"] = True, r["gold_label"]
    comparison = compare_reports(baseline, make_report(changed, fingerprint="e" * 64))
    assert comparison["same_checkpoint"] is False
    assert comparison["flips"]["correct_to_wrong"] == 6 and comparison["flips"]["wrong_to_correct"] == 1
    flip = next(f for f in comparison["flips"]["items"] if f["direction"] == "correct_to_wrong")
    assert flip["current_answer"] == "Z" and flip["baseline_answer"] == flip["gold_label"]
    assert flip["question"].startswith("Question ")
    cell = next(c for c in comparison["cells"] if (c["metric"], c["dataset"], c["perturbation"], c["prompt"]) ==
                ("accuracy", "synth-en", "original", "p0"))
    assert (cell["worse"], cell["better"], cell["units"]) == (6, 1, 30)
    assert cell["delta"] == pytest.approx(-5 / 30, abs=1e-6)
    assert cell["p_value"] == pytest.approx(16 / 128)  # 2 * P(X <= 1 | n=7, 1/2)
    assert cell["ci_low"] < cell["delta"] < cell["ci_high"] <= 0


def test_cases_in_one_report_only_are_listed_and_left_out(records):
    baseline = make_report(records)
    current = make_report([r for r in records if r["item_id"] != "00003"] +
                          [{**records[0], "case_id": "synth-en/extra/original/p0", "item_id": "extra"}])
    comparison = compare_reports(baseline, current)
    cases = comparison["cases"]
    assert len(cases["only_in_baseline"]) == 2 * 3 * 3  # item 00003 of both datasets, every perturbation x prompt
    assert cases["only_in_current"] == ["synth-en/extra/original/p0"]
    assert cases["common"] == len(records) - 18
    cell = next(c for c in comparison["cells"] if (c["metric"], c["dataset"], c["perturbation"], c["prompt"]) ==
                ("accuracy", "synth-en", "original", "p0"))
    assert cell["units"] == 29


def test_changed_item_content_makes_every_cell_reading_it_incomparable(records):
    baseline = make_report(records)
    changed = copy.deepcopy(records)
    for r in changed:
        if r["dataset"] == "synth-en" and r["item_id"] == "00004" and r["perturbation"] == "original" \
                and r["prompt"] == "p1":
            r["item_hash"] = "0" * 16
    comparison = compare_reports(baseline, make_report(changed))
    assert comparison_errors(comparison) == []
    assert [(b["dataset"], b["perturbation"], b["prompt"]) for b in comparison["incomparable"]] == \
        [("synth-en", "original", "p1")]
    assert "item content changed for 1 item id(s), e.g. 00004" in comparison["incomparable"][0]["reasons"][0]
    blocked = {(c["metric"], c["dataset"], c["perturbation"], c["prompt"]) for c in comparison["cells"]
               if not c["comparable"]}
    # the block itself, its all-prompt aggregate, stability of every perturbation under p1 (it reads the
    # original), worst-case accuracy of p1 and over all prompts, prompt agreement on the original
    assert ("accuracy", "synth-en", "original", "p1") in blocked
    assert ("accuracy", "synth-en", "original", "*") in blocked
    assert ("stability", "synth-en", "typos", "p1") in blocked
    assert ("worst_case_accuracy", "synth-en", "*", "*") in blocked
    assert ("prompt_agreement", "synth-en", "original", "*") in blocked
    assert ("crosslingual_agreement", "synth-en|synth-es", "original", "p1") in blocked
    assert ("accuracy", "synth-en", "original", "p0") not in blocked
    assert ("stability", "synth-en", "typos", "p0") not in blocked
    assert ("accuracy", "synth-es", "original", "p1") not in blocked
    assert all("reasons" in c and "delta" not in c for c in comparison["cells"] if not c["comparable"])


def test_prompt_perturbation_and_seed_changes_are_incomparable(records):
    baseline = make_report(records)
    reprompted = copy.deepcopy(records)
    for r in reprompted:
        if r["prompt"] == "j0":
            r["prompt_hash"] = "1" * 16
    blocks = compare_reports(baseline, make_report(reprompted))["incomparable"]
    assert {b["prompt"] for b in blocks} == {"j0"} and len(blocks) == 6
    assert "prompt template 'j0' changed" in blocks[0]["reasons"][0]

    redefined = compare_reports(baseline, make_report(records, versions={"typos": 2}))["incomparable"]
    assert {b["perturbation"] for b in redefined} == {"typos"}
    assert "perturbation 'typos' is defined differently (version 1 -> 2)" in redefined[0]["reasons"]

    reseeded = compare_reports(baseline, make_report(records, seed=7))["incomparable"]
    assert {b["perturbation"] for b in reseeded} == {"shuffle", "typos"}
    assert "seed 0 in the baseline and 7 now" in reseeded[0]["reasons"][0]


def test_duplicate_case_ids_are_an_error(records):
    report = make_report(records)
    broken = make_report(records + records[:1])
    with pytest.raises(ValueError, match="lists case .* twice"):
        compare_reports(report, broken)


@pytest.mark.parametrize("text, metric, margin", [
    ("accuracy:2pp", "accuracy", 0.02), (" stability : 5pp ", "stability", 0.05), ("compliance:0.5pp", "compliance",
                                                                                     0.005),
    ("accuracy:0pp", "accuracy", 0.0),
])
def test_regression_rules_parse(text, metric, margin):
    rule = parse_regression_rule(text)
    assert (rule.metric, rule.margin) == (metric, pytest.approx(margin))


@pytest.mark.parametrize("text, message", [
    ("accuracy", "expects METRIC:MARGINpp"), ("accuracy:2", "expects METRIC:MARGINpp"),
    ("accuracy:-2pp", "expects METRIC:MARGINpp"), ("speed:2pp", "unknown metric 'speed'"),
    ("flip_rate:2pp", "gate on stability instead"), ("accuracy:150pp", "below 100pp"),
])
def test_malformed_regression_rules_are_rejected(text, message):
    with pytest.raises(RegressionRuleError, match=message):
        parse_regression_rule(text)


def test_the_same_metric_twice_with_different_margins_is_rejected():
    with pytest.raises(RegressionRuleError, match="accuracy twice"):
        check_unique([parse_regression_rule("accuracy:2pp"), parse_regression_rule("accuracy:5pp")])


def test_regression_gates_follow_the_run():
    combos = {("d-en", "original", "p0", "loglik"), ("d-en", "typos", "p0", "loglik"),
              ("d-en", "original", "j0", "generate"), ("d-es", "original", "p0", "loglik")}
    rules = [parse_regression_rule(t) for t in ("accuracy:2pp", "stability:5pp", "compliance:1pp",
                                                "crosslingual_agreement:3pp", "worst_case_accuracy:2pp")]
    ids = [cell.gate_id for cell in regression_cells(rules, combos)]
    assert ids == ["accuracy:2pp/d-en", "accuracy:2pp/d-en/generate", "accuracy:2pp/d-en/typos",
                   "accuracy:2pp/d-es", "compliance:1pp/d-en", "crosslingual_agreement:3pp/d-en|d-es",
                   "stability:5pp/d-en/typos", "worst_case_accuracy:2pp/d-en"]


def _block_drop(population: Population, shift: float, seed: int) -> tuple[dict, dict]:
    base = make_report(simulate_records(population, 1.0, np.random.default_rng(seed)))
    worse = make_report(simulate_records(population, 1.0, np.random.default_rng(seed + 1),
                                         drop={("synth-en", "original", "p0"): shift}))
    return base, worse


def test_a_regression_gate_fails_on_a_real_drop_and_names_the_cell(population):
    baseline, current = _block_drop(population, shift=4.0, seed=10)
    comparison = compare_reports(baseline, current)
    cell = RegressionCell("accuracy", 0.02, "synth-en", "original", "loglik")
    verdict = evaluate_regression(cell, comparison)
    assert verdict.passed is False
    assert "accuracy[synth-en/original/p0/loglik]" in verdict.message
    row = verdict.to_dict()
    assert row["kind"] == "regression" and row["regressed_cells"][0] == "accuracy[synth-en/original/p0/loglik]"
    assert row["value"] < -0.02 and row["p_adjusted"] < 0.05
    untouched = evaluate_regression(RegressionCell("accuracy", 0.02, "synth-es", "original", "loglik"), comparison)
    assert untouched.passed is True


def test_a_significant_drop_within_the_margin_passes(population):
    baseline, current = _block_drop(population, shift=4.0, seed=10)
    comparison = compare_reports(baseline, current)
    drop = -min(c["delta"] for c in comparison["cells"] if c["metric"] == "accuracy" and c["comparable"])
    wide = RegressionCell("accuracy", round(drop + 0.01, 4), "synth-en", "original", "loglik")
    assert evaluate_regression(wide, comparison).passed is True


def test_a_gate_without_comparable_cells_is_skipped_with_the_reason(records):
    baseline = make_report(records)
    comparison = compare_reports(baseline, make_report(records, versions={"typos": 2}))
    verdict = evaluate_regression(RegressionCell("stability", 0.0, "synth-en", "typos", "loglik"), comparison)
    assert verdict.passed is None and "perturbation 'typos' is defined differently" in verdict.message
    absent = evaluate_regression(RegressionCell("stability", 0.0, "synth-en", "gold_to_nota", "loglik"), comparison)
    assert absent.passed is None and "not in the baseline" in absent.message
