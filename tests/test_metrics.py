"""Metrics on synthetic outcome records, against values computed by hand."""

import pytest

from medgate.items import Item, Option
from medgate.metrics import ALL, compute_metrics, index_metrics
from medgate.perturbations import apply
from medgate.perturbations.base import origin_of
from medgate.stats import wilson_interval


def record(item_id, chosen, correct, perturbation="original", prompt="p0", mode="loglik", dataset="d",
           language="en", pair_id=None, **extra):
    """One case outcome; `chosen` is the predicted option's index in the published item (None: no answer)."""
    return {"dataset": dataset, "item_id": item_id, "perturbation": perturbation, "prompt": prompt,
            "mode": mode, "language": language, "pair_id": pair_id, "predicted_origin": chosen,
            "correct": correct, **extra}


def metric(records, name, dataset="d", perturbation="original", prompt="p0", mode="loglik"):
    return index_metrics(compute_metrics(records)).get((name, dataset, perturbation, prompt, mode))


def test_accuracy_per_prompt_and_over_all_prompts_with_wilson_interval():
    records = [record("1", 0, True), record("2", 1, False), record("3", 2, True),
               record("1", 0, True, prompt="p1"), record("2", 1, True, prompt="p1"),
               record("3", 0, False, prompt="p1")]
    p0 = metric(records, "accuracy")
    assert (p0.value, p0.n, p0.successes) == (pytest.approx(2 / 3), 3, 2)
    assert (p0.ci_low, p0.ci_high) == pytest.approx(wilson_interval(2, 3), abs=1e-6)
    everything = metric(records, "accuracy", prompt=ALL)
    assert (everything.value, everything.n) == (pytest.approx(4 / 6), 6)


def test_generate_mode_measures_strict_and_lenient_accuracy_and_compliance():
    records = [
        record("1", 0, True, mode="generate", prompt="j0", schema_valid=True, lenient_correct=True),
        record("2", 1, False, mode="generate", prompt="j0", schema_valid=False, lenient_correct=True),
        record("3", None, False, mode="generate", prompt="j0", schema_valid=False, lenient_correct=False),
        record("4", 2, False, mode="generate", prompt="j0", schema_valid=True, lenient_correct=False),
    ]
    assert metric(records, "accuracy", prompt="j0", mode="generate").value == 0.25
    assert metric(records, "lenient_accuracy", prompt="j0", mode="generate").value == 0.5
    assert metric(records, "compliance", prompt="j0", mode="generate").value == 0.5
    assert metric(records + [record("1", 0, True)], "compliance") is None  # not a loglik metric


def test_stability_compares_the_chosen_published_option_with_the_original():
    originals = [record("1", 0, True), record("2", 1, False), record("3", 2, True), record("4", None, False)]
    perturbed = [record("1", 0, True, "typos"), record("2", 3, False, "typos"), record("3", 2, True, "typos"),
                 record("4", None, False, "typos"), record("5", 1, True, "typos")]  # 5 has no original
    stability = metric(originals + perturbed, "stability", perturbation="typos")
    # 1 same, 2 changed, 3 same, 4 no answer in either (unstable), 5 not counted
    assert (stability.value, stability.n) == (0.5, 4)


def test_flip_rate_counts_correct_to_wrong_among_items_correct_on_the_original():
    originals = [record("1", 0, True), record("2", 1, True), record("3", 2, False), record("4", 0, True)]
    perturbed = [record("1", 0, True, "gold_last"), record("2", 3, False, "gold_last"),
                 record("3", 1, True, "gold_last"), record("4", None, False, "gold_last")]
    flips = metric(originals + perturbed, "flip_rate", perturbation="gold_last")
    assert (flips.value, flips.n) == (pytest.approx(2 / 3), 3)  # item 3 was wrong on the original


def test_gold_to_nota_choosing_nota_where_the_original_chose_the_gold_is_stable():
    options = tuple(Option(label, text) for label, text in zip("ABCD", "wxyz"))
    shown = apply("gold_to_nota+shuffle_options", Item("1", "d", "en", "Which?", options, "C"), 0)
    origin = origin_of(shown)
    nota = shown.gold_index
    other = next(i for i in range(4) if origin[i] == 1)  # "x", wrong in both items
    name = "gold_to_nota+shuffle_options"
    records = [
        record("a", 2, True), record("a", origin[nota], True, name),  # gold -> NOTA
        record("b", 1, False), record("b", origin[other], False, name),  # the same wrong option
        record("c", 2, True), record("c", origin[other], False, name),  # gold -> wrong
    ]
    assert origin[nota] == 2
    stability = metric(records, "stability", perturbation="gold_to_nota+shuffle_options")
    assert (stability.value, stability.n) == (pytest.approx(2 / 3), 3)
    assert metric(records, "flip_rate", perturbation="gold_to_nota+shuffle_options").value == 0.5


def test_an_inserted_distractor_is_never_stable():
    item = Item("1", "d", "en", "Which?", (Option("A", "w"), Option("B", "x"), Option("C", "y")), "A")
    shown = apply("add_nota_distractor", item, 0)
    records = [record("1", 0, True), record("1", origin_of(shown)[3], False, "add_nota_distractor")]
    assert origin_of(shown)[3] is None
    assert metric(records, "stability", perturbation="add_nota_distractor").value == 0.0


def test_worst_case_accuracy_needs_every_perturbation_right():
    records = [record("1", 0, True), record("1", 0, True, "typos"), record("1", 0, True, "gold_last"),
               record("2", 0, True), record("2", 1, False, "typos"), record("2", 0, True, "gold_last"),
               record("3", 0, True), record("3", 0, True, "typos")]  # 3 lacks gold_last: not counted
    worst = metric(records, "worst_case_accuracy", perturbation=ALL)
    assert (worst.value, worst.n) == (0.5, 2)


def test_worst_case_accuracy_over_all_prompts_needs_every_prompt_right_too():
    records = [record("1", 0, True), record("1", 0, True, "typos"),
               record("1", 0, True, prompt="p1"), record("1", 2, False, "typos", prompt="p1")]
    assert metric(records, "worst_case_accuracy", perturbation=ALL).value == 1.0
    assert metric(records, "worst_case_accuracy", perturbation=ALL, prompt=ALL).value == 0.0


def test_prompt_agreement_is_the_share_of_items_every_prompt_answered_alike():
    records = [record("1", 0, True), record("1", 0, True, prompt="p1"), record("1", 0, True, prompt="p2"),
               record("2", 1, False), record("2", 2, True, prompt="p1"), record("2", 1, False, prompt="p2"),
               record("3", None, False), record("3", None, False, prompt="p1"),
               record("3", None, False, prompt="p2"),
               record("4", 0, True), record("4", 0, True, prompt="p1")]  # 4 lacks p2: not counted
    agreement = metric(records, "prompt_agreement", prompt=ALL)
    assert (agreement.value, agreement.n) == (pytest.approx(1 / 3), 3)


def test_crosslingual_agreement_pairs_english_and_spanish_twins():
    def twin(pair, en, es, **extra):
        return [record(pair, en, True, dataset="s-en", language="en", pair_id=pair, **extra),
                record(pair, es, True, dataset="s-es", language="es", pair_id=pair, **extra)]
    records = twin("p1", 0, 0) + twin("p2", 1, 2) + twin("p3", None, None) + twin("p4", 3, 3)
    records.append(record("lonely", 0, True, dataset="s-en", pair_id="p9"))  # no Spanish twin
    records += twin("p1", 0, 1, perturbation="typos")
    agreement = metric(records, "crosslingual_agreement", dataset="s-en|s-es")
    assert (agreement.value, agreement.n) == (0.5, 4)
    assert metric(records, "crosslingual_agreement", dataset="s-en|s-es", prompt=ALL).n == 4
    assert metric(records, "crosslingual_agreement", dataset="s-en|s-es", perturbation="typos").value == 0.0


def test_cases_with_non_finite_scores_are_left_out_of_every_metric():
    records = [record("1", 0, True), record("2", 0, True, non_finite=True)]
    assert metric(records, "accuracy").n == 1
