import pytest

from medgate.gates import (
    GateCell,
    GateConfigError,
    evaluate,
    gate_cells,
    load_thresholds,
    parse_threshold_override,
    unknown_datasets,
)
from medgate.metrics import proportion
from medgate.stats import wilson_interval


def test_wilson_interval_matches_reference_values():
    # statsmodels.stats.proportion.proportion_confint(count, nobs, method="wilson")
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(48, 48) == pytest.approx((0.9259, 1.0), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("text, expected", [("accuracy=0.9", ("accuracy", 0.9)), (" stability = 1 ", ("stability", 1.0))])
def test_threshold_override_parses(text, expected):
    assert parse_threshold_override(text) == expected


@pytest.mark.parametrize("text, message", [
    ("accuracy", "NAME=VALUE"), ("accuracy=1.5", "outside"), ("speed=0.5", "unknown metric"),
    ("accuracy=abc", "NAME=VALUE"), ("accuracy=-0.1", "outside"),
])
def test_bad_threshold_overrides_are_rejected(text, message):
    with pytest.raises(GateConfigError, match=message):
        parse_threshold_override(text)


def test_thresholds_file_overrides_and_scope(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[accuracy]\nmin = 0.6\nby_dataset = { "b" = 0.4 }\ndatasets = ["a", "b"]\n'
                    '[flip_rate]\nmax = 0.2\n')
    thresholds = load_thresholds(path)
    assert thresholds.threshold("accuracy", "a", "original") == 0.6
    assert thresholds.threshold("accuracy", "b", "original") == 0.4
    assert thresholds.threshold("accuracy", "c", "original") is None
    overridden = load_thresholds(path, [("accuracy", 0.95)])
    assert overridden.threshold("accuracy", "b", "original") == 0.95  # the command line beats by_dataset
    assert overridden.threshold("accuracy", "c", "original") is None  # and keeps the file's scope
    assert load_thresholds(path, [("stability", 0.9)]).threshold("stability", "c", "typos") == 0.9  # a new rule


@pytest.mark.parametrize("rule, message", [
    ('[accuracy]\nmin = 0.5\nmax = 0.9', r"\[accuracy\] `max` does not apply: accuracy is gated with `min`"),
    ('[accuracy]\nmin = 0.5\ndataset = ["a"]', r"\[accuracy\] unknown key `dataset`; a rule takes by_dataset, by_perturbation"),
    ('[accuracy]\nmin = 0.5\ndatasets = "a"', r"\[accuracy\] datasets must be a non-empty list of dataset names"),
    ('[accuracy]\nmin = 0.5\ndatasets = [["a"]]', r"\[accuracy\] datasets must be a non-empty list of dataset names"),
    ('[accuracy]\nmin = 0.5\nperturbations = []', r"\[accuracy\] perturbations must be a non-empty list"),
    ('[accuracy]\nmin = 0.5\nby_perturbation = { smuffle = 0.2 }', r"perturbations: unknown perturbation 'smuffle'"),
    ('[stability]\nmin = 0.9\nperturbations = ["typoz"]', r"\[stability\] perturbations: unknown perturbation 'typoz'"),
    ('[stability]\nmin = 0.9\nperturbations = "typos"', "must be a non-empty list of perturbation names"),
])
def test_a_rule_that_would_gate_somewhere_else_than_written_is_refused(tmp_path, rule, message):
    path = tmp_path / "t.toml"
    path.write_text(f"{rule}\n")
    with pytest.raises(GateConfigError, match=message):
        load_thresholds(path)


def test_dataset_names_neither_run_nor_registered_are_found(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[accuracy]\nmin = 0.5\ndatasets = ["smple-en", "medqa", "mine"]\n'
                    '[stability]\nmin = 0.5\nby_dataset = { "sample-es" = 0.4, "mne" = 0.3 }\n')
    found = unknown_datasets(load_thresholds(path), ran=["mine", "sample-en"], registered=["medqa", "sample-es"])
    assert found == ["[accuracy] datasets: 'smple-en'", "[stability] by_dataset: 'mne'"]


def test_a_flat_threshold_says_it_must_be_a_table(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("accuracy = 0.9\n")
    with pytest.raises(GateConfigError, match=r"`accuracy = ...` must be a table: \[accuracy\] and then min = VALUE"):
        load_thresholds(path)


def test_bad_thresholds_file(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[accurracy]\nmin = 0.6\n")
    with pytest.raises(GateConfigError, match="unknown gate metric"):
        load_thresholds(path)


def test_gate_cells_follow_the_run(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("[accuracy]\nmin = 0.5\n[stability]\nmin = 0.7\n[compliance]\nmin = 0.9\n")
    thresholds = load_thresholds(path)
    combos = {("d", "original", "p0", "loglik"), ("d", "typos", "p0", "loglik"), ("d", "original", "j0", "generate")}
    assert [c.gate_id for c in gate_cells("accuracy", thresholds, combos)] == ["d/generate", "d"]
    assert [c.gate_id for c in gate_cells("stability", thresholds, combos)] == ["d/typos"]
    assert [c.gate_id for c in gate_cells("compliance", thresholds, combos)] == ["d/original"]


def test_gate_verdict_message_shows_value_threshold_n_and_interval():
    cell = GateCell("accuracy", "d", "original", "*", "loglik", "min", 0.9)
    metric = proportion("accuracy", "d", "original", "*", "loglik", [True] * 20 + [False] * 28)
    verdict = evaluate(cell, {metric.cell: metric})
    assert verdict.passed is False
    assert verdict.message.startswith("accuracy 0.417 is below the threshold 0.900 (n=48, 95% Wilson CI 0.288-0.557)")
    assert evaluate(cell, {}).passed is None


def test_max_bound_gate():
    cell = GateCell("flip_rate", "d", "typos", "*", "loglik", "max", 0.1)
    metric = proportion("flip_rate", "d", "typos", "*", "loglik", [True] * 2 + [False] * 18)
    assert evaluate(cell, {metric.cell: metric}).passed is True


def test_a_perturbations_list_limits_a_gate_to_those_perturbations(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[stability]\nmin = 0.9\nperturbations = ["typos", "shuffle_options+typos"]\n')
    thresholds = load_thresholds(path)
    combos = {("d", p, "p0", "loglik") for p in ("original", "typos", "gold_last", "shuffle_options+typos")}
    assert [c.gate_id for c in gate_cells("stability", thresholds, combos)] == ["d/shuffle_options+typos", "d/typos"]
    overridden = load_thresholds(path, [("stability", 0.5)])
    assert overridden.threshold("stability", "d", "typos") == 0.5
    assert overridden.threshold("stability", "d", "gold_last") is None  # the value changes, not the scope


def test_prompt_scope_gates_each_listed_prompt_and_keeps_plain_ids_for_a_single_prompt(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[accuracy]\nmin = 0.9\nprompts = ["p0", "j0"]\n')
    thresholds = load_thresholds(path)
    several = {("d", "original", p, "loglik") for p in ("p0", "p1", "p2")}
    assert [c.gate_id for c in gate_cells("accuracy", thresholds, several)] == ["d/p0"]
    single = {("d", "original", "p0", "loglik")}
    assert [c.gate_id for c in gate_cells("accuracy", thresholds, single)] == ["d"]
    unlisted = {("d", "original", "p1", "loglik")}
    assert gate_cells("accuracy", thresholds, unlisted) == []
    path.write_text('[accuracy]\nmin = 0.9\nprompts = ["p9"]\n')
    with pytest.raises(GateConfigError, match="prompts must be a list of prompt names"):
        load_thresholds(path)
