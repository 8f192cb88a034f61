"""The robustness metrics of the catalogue on synthetic records, against values computed by hand:
circular accuracy, consistency, position bias, the answer-order sensitivity gap, prompt
sensitivity and calibration; and what the catalogue gives every metric (gates, regression gates,
paired comparisons)."""

import math

import pytest
from scipy import stats as scipy_stats

from medgate.compare import compare_reports
from medgate.compare.regression import RegressionRuleError, parse_regression_rule, regression_cells
from medgate.gates import GateConfigError, evaluate, gate_cells, load_thresholds, parse_threshold_override
from medgate.items import Item, Option
from medgate.metrics import ALL, TwinPair, compute_metrics, index_metrics
from medgate.metrics.calibration import REPLICATES
from medgate.metrics.catalogue import CATALOGUE, PAIRED
from medgate.metrics.scopes import blocks
from medgate.perturbations import apply, resolve_set
from medgate.stats import chi_square_sf

LABELS = "ABCD"


def case(item_id, chosen, gold, perturbation="original", prompt="p0", mode="loglik", dataset="d", options=4,
         origin=None, scores=None):
    """One case: `chosen` and `gold` are presented positions (chosen None: no answer); `origin` is the
    chosen option's index in the published item (default: its presented position)."""
    labels = LABELS[:options]
    record = {
        "case_id": f"{dataset}/{item_id}/{perturbation}/{prompt}", "dataset": dataset, "item_id": item_id,
        "language": "en", "perturbation": perturbation, "prompt": prompt, "mode": mode,
        "options_presented": [{"label": label, "text": f"option {label}"} for label in labels],
        "gold_label": labels[gold], "predicted_label": None if chosen is None else labels[chosen],
        "correct": chosen == gold, "predicted_origin": chosen if origin is None else origin,
        "question": "Which?", "item_hash": f"h{item_id}", "prompt_hash": prompt,
    }
    if scores is not None:
        record["scores"] = dict(zip(labels, scores))
    return record


def value(records, name, dataset="d", perturbation="original", prompt="p0", mode="loglik"):
    return index_metrics(compute_metrics(records)).get((name, dataset, perturbation, prompt, mode))


# -- circular accuracy ----------------------------------------------------------------------------------


def test_rotations_put_the_gold_in_every_position_once():
    options = tuple(Option(label, text) for label, text in zip(LABELS, "wxyz"))
    item = Item("1", "d", "en", "Which?", options, "B")
    assert resolve_set("circular") == ["original", "rotate_1", "rotate_2", "rotate_3"]
    shown = [apply(name, item, 0) for name in resolve_set("circular")]
    assert [s.gold_index for s in shown] == [1, 0, 3, 2]
    assert all(s.options[s.gold_index].text == "x" for s in shown)
    assert [o.text for o in shown[1].options] == ["x", "y", "z", "w"]
    assert [o.label for o in shown[1].options] == list(LABELS)


def test_circular_accuracy_counts_an_item_only_if_right_under_every_rotation():
    rotations = ["original", "rotate_1", "rotate_2", "rotate_3"]
    records = []
    records += [case("1", 1, 1, p) for p in rotations]  # right under all four
    records += [case("2", 0, 0, p) for p in rotations[:2]] + [case("2", 3, 0, "rotate_2"), case("2", 0, 0, "rotate_3")]
    records += [case("3", 2, 2, p) for p in rotations[:3]]  # rotate_3 never ran for it: not counted
    # three options: rotate_3 is rotate_0 again and is not needed; right under original, 1 and 2
    records += [case("4", 0, 0, p, options=3) for p in rotations[:3]] + [case("4", 1, 0, "rotate_3", options=3)]
    records += [case("1", 1, 1, "typos"), case("2", 1, 2, "typos")]  # not a rotation: no effect
    circular = value(records, "circular_accuracy", perturbation="circular")
    assert (circular.value, circular.n, circular.successes) == (pytest.approx(2 / 3), 3, 2)


def test_circular_accuracy_over_all_prompts_pools_the_items_of_each_prompt():
    rotations = ["original", "rotate_1", "rotate_2", "rotate_3"]
    records = [case("1", 0, 0, p, prompt="p0") for p in rotations]
    records += [case("1", 0, 0, p, prompt="p1") for p in rotations[:3]] + [case("1", 1, 0, "rotate_3", prompt="p1")]
    assert value(records, "circular_accuracy", perturbation="circular", prompt="p1").value == 0.0
    pooled = value(records, "circular_accuracy", perturbation="circular", prompt=ALL)
    assert (pooled.value, pooled.n) == (0.5, 2)


# -- consistency ----------------------------------------------------------------------------------------


def test_consistency_asks_for_the_same_published_option_under_every_perturbation():
    ran = ["original", "typos", "shuffle_options"]
    records = [case("a", 2, 0, p, origin=2) for p in ran]  # wrong, but always the same option
    records += [case("b", 0, 0, "original"), case("b", 0, 0, "typos"), case("b", 1, 0, "shuffle_options", origin=3)]
    records += [case("c", None, 0, p, origin=None) for p in ran]  # no answer anywhere
    records += [case("d", 1, 1, p, origin=1) for p in ran]
    records += [case("e", 1, 1, p, origin=1) for p in ran[:2]]  # shuffle_options missing: not counted
    consistency = value(records, "consistency", perturbation=ALL)
    assert (consistency.value, consistency.n) == (0.5, 4)
    # stability would call item b stable under typos: consistency looks across all perturbations
    assert value(records, "stability", perturbation="typos").value == pytest.approx(4 / 5)  # all but c


# -- position bias and the answer-order gap -------------------------------------------------------------


def test_chi_square_survival_matches_scipy():
    for statistic in (0.0, 0.1, 0.5, 1.0, 2.5, 3.0, 7.8, 24.0, 80.0, 300.0):
        for dof in (1, 2, 3, 4, 7, 30):
            expected = scipy_stats.chi2.sf(statistic, dof)
            assert chi_square_sf(statistic, dof) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_position_bias_of_a_model_that_always_answers_a():
    golds = [0, 1, 2, 3, 0, 1, 2, 3]
    records = [case(str(i), 0, gold, "shuffle_options") for i, gold in enumerate(golds)]
    bias = value(records, "position_bias", perturbation="shuffle_options")
    # chosen (8, 0, 0, 0) against gold (2, 2, 2, 2): TV = (6 + 2 + 2 + 2) / (2 * 8); chi-square 36/2 + 3 * 2 = 24
    assert (bias.value, bias.n) == (0.75, 8)
    assert bias.p_value == pytest.approx(scipy_stats.chi2.sf(24.0, 3))
    assert bias.p_value == pytest.approx(scipy_stats.chisquare([8, 0, 0, 0], [2, 2, 2, 2]).pvalue)
    assert bias.successes is None and bias.ci_low is None


def test_position_bias_is_none_for_a_model_that_follows_the_gold():
    records = [case(str(i), gold, gold) for i, gold in enumerate([0, 1, 1, 3, 2])]
    records.append(case("x", None, 2))  # no answer: left out
    bias = value(records, "position_bias")
    assert (bias.value, bias.n, bias.p_value) == (0.0, 5, 1.0)


def test_position_bias_where_the_gold_never_stands_is_certain():
    # gold_last: every gold in position 3; one choice of position 0 cannot happen without a bias
    records = [case(str(i), 3, 3, "gold_last") for i in range(3)] + [case("9", 0, 3, "gold_last")]
    bias = value(records, "position_bias", perturbation="gold_last")
    assert (bias.value, bias.p_value) == (0.25, 0.0)


def test_order_sensitivity_gap_compares_the_orderings_only():
    records = [case(str(i), 0, 0) for i in range(4)]  # original: 4/4
    records += [case(str(i), 0, 1 if i else 0, "shuffle_options") for i in range(4)]  # 1/4
    records += [case(str(i), 3, 3 if i < 2 else 0, "gold_last") for i in range(4)]  # 2/4
    records += [case(str(i), 1, 0, "typos") for i in range(4)]  # 0/4, but not an ordering
    gap = value(records, "order_sensitivity_gap", perturbation=ALL)
    assert (gap.value, gap.n) == (0.75, 12)


# -- prompt sensitivity ---------------------------------------------------------------------------------


def test_prompt_sensitivity_reports_maxp_avgp_and_the_spread():
    rights = {"p0": [1, 1, 1, 0], "p1": [1, 0, 0, 0], "p2": [1, 1, 0, 0]}
    records = [case(str(i), 0, 0 if right else 1, prompt=prompt)
               for prompt, flags in rights.items() for i, right in enumerate(flags)]
    assert value(records, "prompt_spread", prompt=ALL).value == 0.5
    assert value(records, "prompt_max_accuracy", prompt=ALL).value == 0.75
    assert value(records, "prompt_mean_accuracy", prompt=ALL).value == 0.5
    assert value(records, "prompt_spread", prompt=ALL).n == 12
    assert value(records[:4], "prompt_spread", prompt=ALL) is None  # one prompt: nothing to compare


# -- calibration ----------------------------------------------------------------------------------------


def test_calibration_ece_and_brier_by_hand():
    log = math.log
    records = [
        case("1", 0, 0, options=2, scores=[log(0.8), log(0.2)]),  # confident 0.8, right
        case("2", 0, 1, options=2, scores=[log(0.6) - 3.0, log(0.4) - 3.0]),  # 0.6, wrong (shifted: normalised)
        case("3", 0, 0, options=2, scores=[log(0.95), log(0.05)]),  # 0.95, right
    ]
    ece, brier = value(records, "ece"), value(records, "brier")
    # bins 8, 6 and 9, one case each: (|1 - 0.8| + |0 - 0.6| + |1 - 0.95|) / 3
    assert ece.value == pytest.approx((0.2 + 0.6 + 0.05) / 3, abs=1e-6)
    # (0.2^2 + 0.2^2 + 0.6^2 + 0.6^2 + 0.05^2 + 0.05^2) / 3
    assert brier.value == pytest.approx((0.08 + 0.72 + 0.005) / 3, abs=1e-6)
    for metric in (ece, brier):
        assert metric.n == 3 and metric.ci_low <= metric.value <= metric.ci_high
    assert value(records, "ece", mode="generate") is None


def test_ece_within_one_bin_is_the_gap_between_accuracy_and_mean_confidence():
    log = math.log
    records = [case(str(i), 0, 0 if i < 3 else 1, options=2, scores=[log(p), log(1 - p)])
               for i, p in enumerate([0.71, 0.73, 0.75, 0.77])]
    ece = value(records, "ece")
    assert ece.value == pytest.approx(abs(0.75 - 0.74), abs=1e-6)


def test_calibration_intervals_are_seeded_per_cell():
    log = math.log
    records = [case(str(i), 0, i % 2, options=2, scores=[log(0.5 + i / 40), log(0.5 - i / 40)]) for i in range(20)]
    first, second = value(records, "ece"), value(list(reversed(records)), "ece")
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)
    assert first.ci_low < first.value < first.ci_high
    assert REPLICATES == 1000


# -- the catalogue ----------------------------------------------------------------------------------------


def test_every_catalogued_metric_is_computed_on_a_run_that_has_its_blocks():
    rotations = ["original", "rotate_1", "rotate_2", "rotate_3", "shuffle_options"]
    records = [case(str(i), 0, i % 4, p, prompt=prompt, scores=[-1.0, -2.0, -3.0, -4.0])
               for i in range(8) for p in rotations for prompt in ("p0", "p1")]
    records += [{**r, "mode": "generate", "prompt": "j" + r["prompt"][1], "case_id": r["case_id"] + "j",
                 "schema_valid": True, "lenient_correct": r["correct"]} for r in records]
    twins = [{**r, "dataset": "d-es", "language": "es", "case_id": "es" + r["case_id"]} for r in records]
    english = [{**r, "dataset": "d-en", "case_id": "en" + r["case_id"]} for r in records]
    for r in english + twins:
        r["pair_id"] = r["item_id"]
    names = {m.name for m in compute_metrics(english + twins) if m.value is not None}
    assert names == set(CATALOGUE)


def test_every_metric_is_gateable_with_its_bound_and_range(tmp_path):
    combos = {("d", p, prompt, "loglik") for p in ("original", "rotate_1", "rotate_2", "rotate_3", "typos")
              for prompt in ("p0", "p1")}
    path = tmp_path / "t.toml"
    path.write_text("".join(f"[{name}]\n{spec.bound} = {spec.upper / 2}\n" for name, spec in CATALOGUE.items()))
    thresholds = load_thresholds(path)
    ids = {name: [c.gate_id for c in gate_cells(name, thresholds, combos)] for name in CATALOGUE}
    assert ids["circular_accuracy"] == ["d/circular"]
    assert ids["consistency"] == ["d"]
    assert ids["position_bias"] == ["d/original", "d/rotate_1", "d/rotate_2", "d/rotate_3", "d/typos"]
    assert ids["prompt_spread"] == ids["position_bias"]
    assert ids["ece"] == ids["position_bias"]
    assert ids["compliance"] == [] and ids["lenient_accuracy"] == []  # generate only
    assert parse_threshold_override("brier=1.5") == ("brier", 1.5)
    with pytest.raises(GateConfigError, match="outside"):
        parse_threshold_override("ece=1.5")


def test_a_lower_is_better_gate_passes_at_most_its_threshold(tmp_path):
    records = [case(str(i), 0, i % 4, "shuffle_options") for i in range(8)]  # position_bias 0.75
    path = tmp_path / "t.toml"
    path.write_text("[position_bias]\nmax = 0.5\n")
    [cell] = gate_cells("position_bias", load_thresholds(path), {("d", "shuffle_options", "p0", "loglik")})
    verdict = evaluate(cell, index_metrics(compute_metrics(records)))
    assert verdict.passed is False and verdict.value == 0.75
    assert "is above the threshold 0.500" in verdict.message and "p=" in verdict.message
    assert verdict.to_dict()["p_value"] == pytest.approx(scipy_stats.chi2.sf(24.0, 3))


def test_paired_metrics_are_the_per_unit_proportions():
    assert PAIRED == {"accuracy", "lenient_accuracy", "compliance", "stability", "worst_case_accuracy",
                      "prompt_agreement", "crosslingual_agreement", "circular_accuracy", "consistency"}
    assert parse_regression_rule("circular_accuracy:2pp").metric == "circular_accuracy"
    for name in ("position_bias", "ece", "prompt_spread"):
        with pytest.raises(RegressionRuleError, match="no paired test"):
            parse_regression_rule(f"{name}:2pp")
    combos = {("d", p, "p0", "loglik") for p in ("original", "rotate_1", "rotate_2", "rotate_3")}
    rules = [parse_regression_rule("circular_accuracy:2pp"), parse_regression_rule("consistency:1pp")]
    assert [c.gate_id for c in regression_cells(rules, combos)] == ["circular_accuracy:2pp/d/circular",
                                                                    "consistency:1pp/d"]


def test_threshold_and_regression_gates_share_one_scope_function():
    combos = {(d, p, "p0", m) for d in ("s-en", "s-es") for p in ("original", "typos") for m in ("loglik", "generate")}
    combos.add(("s-en", "gold_last", "p0", "loglik"))  # ran in English only: no twin block
    assert blocks("pairs", combos, "loglik") == {("s-en|s-es", "original", "loglik"), ("s-en|s-es", "typos", "loglik")}
    assert blocks("across", combos) == {(d, ALL, m) for d in ("s-en", "s-es") for m in ("loglik", "generate")}
    assert blocks("circular", combos) == set()
    assert TwinPair.parse("s-en|s-es") == TwinPair("s-en", "s-es") and TwinPair.parse("s-en") is None
    assert TwinPair.among({"s-en", "s-es", "m-en"}) == [TwinPair("s-en", "s-es")]


def _report(records):
    return {"run_id": "r", "status": "complete", "manifest": {"model": {"alias": "m"}}, "cases": records}


def test_a_comparison_pairs_the_new_proportions_and_shows_the_statistics_without_a_test():
    rotations = ["original", "rotate_1", "rotate_2", "rotate_3"]
    before = [case(str(i), 0, 0, p) for i in range(10) for p in rotations]
    after = [case(str(i), 0, 0 if i < 4 or p == "original" else 1, p) for i in range(10) for p in rotations]
    comparison = compare_reports(_report(before), _report(after))
    cells = {(c["metric"], c["perturbation"], c["prompt"]): c for c in comparison["cells"]}
    circular = cells[("circular_accuracy", "circular", "p0")]
    assert (circular["baseline"], circular["current"], circular["worse"], circular["better"]) == (1.0, 0.4, 6, 0)
    assert circular["p_value"] == pytest.approx(2 * 0.5 ** 6)
    bias = cells[("position_bias", "rotate_1", "p0")]
    assert bias["baseline"] == 0.0 and bias["current"] == pytest.approx(0.6)
    assert bias["p_value"] is None and bias["worse"] is None and bias["ci_low"] is None


def test_the_readme_and_the_schema_define_every_catalogued_metric():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    metrics_section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    schema = json.loads((root / "fixtures" / "schemas" / "report.schema.json").read_text(encoding="utf-8"))
    described = schema["$defs"]["metric"]["properties"]["name"]["description"]
    for name, spec in CATALOGUE.items():
        assert f"`{name}`" in metrics_section, name
        assert name in described, name
        assert spec.definition


def test_calibration_over_all_prompts_of_a_single_prompt_repeats_its_cell():
    log = math.log
    records = [case(str(i), 0, i % 2, options=2, scores=[log(0.6 + i / 50), log(0.4 - i / 50)]) for i in range(10)]
    for name in ("ece", "brier"):
        one, pooled = value(records, name), value(records, name, prompt=ALL)
        assert (pooled.value, pooled.n, pooled.ci_low, pooled.ci_high) == (one.value, one.n, one.ci_low, one.ci_high)
