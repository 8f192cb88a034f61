"""Whole sessions with perturbations, several prompts and both modes (pytester subprocesses)."""


import pytest

from medgate.perturbations import get, resolve_set
from medgate.perturbations.answer_options import roman_labels
from medgate.perturbations.catalog import catalog
from session_reports import report_of

pytestmark = pytest.mark.slow




def failed_gates(document: dict) -> set[str]:
    return {g["name"] for g in document["gates"] if g["passed"] is False}


def test_every_perturbation_prompt_and_mode_lands_in_the_report(suite, tiny_checkpoint):
    # The acceptance run on a seeded sample of 4 items per language (the full run is timed in the README).
    result = suite.runpytest_subprocess("-n", "4", "--model", "tiny", "--perturbations", "all",
                                        "--prompts", "all", "--mode", "both", "--limit", "4",
                                        "--report", "report.json", "-p", "no:cacheprovider")
    assert "INTERNALERROR" not in result.stdout.str()
    document = report_of(suite)
    cases = document["cases"]
    perturbations = resolve_set("all")
    assert document["status"] in ("passed", "failed")
    assert len(cases) == 8 * len(perturbations) * 6
    assert result.parseoutcomes()["passed"] >= len(cases)  # every case produced a usable answer

    seen = {c["perturbation"] for c in cases}
    assert len({p for p in seen if "+" not in p} - {"original"}) >= 10
    assert len({p for p in seen if "+" in p}) >= 3
    for language in ("en", "es"):
        prompts = {(c["prompt"], c["mode"]) for c in cases if c["language"] == language}
        assert {p for p, m in prompts if m == "loglik"} == {"p0", "p1", "p2"}
        assert {p for p, m in prompts if m == "generate"} == {"j0", "j1", "j2"}
    for case in cases:
        labels = [o["label"] for o in case["options_presented"]]
        assert case["gold_label"] in labels and len(set(labels)) == len(labels)
        gold_text = case["options_presented"][labels.index(case["gold_label"])]["text"]
        if "gold_to_nota" in case["perturbation"]:
            assert gold_text == catalog().gold_nota[case["language"]][0]
        if "relabel_roman" in case["perturbation"]:
            assert labels == roman_labels(len(labels))
        if case["mode"] == "generate":
            assert {"raw_output", "schema_valid", "strict_answer", "lenient_answer"} <= set(case)

    manifest = document["manifest"]
    assert [p["name"] for p in manifest["perturbations"]] == perturbations
    assert manifest["perturbations"] == [get(name).definition() for name in perturbations]
    assert {(p["name"], p["language"]) for p in manifest["prompts"]} == {
        (name, language) for name in ("p0", "p1", "p2", "j0", "j1", "j2") for language in ("en", "es")}
    names = {(m["name"], m["perturbation"], m["mode"]) for m in document["metrics"]}
    for perturbation in perturbations[1:]:
        assert {("stability", perturbation, "loglik"), ("flip_rate", perturbation, "generate"),
                ("compliance", perturbation, "generate")} <= names
    assert {("worst_case_accuracy", "*", "loglik"), ("prompt_agreement", "typos", "generate"),
            ("crosslingual_agreement", "shuffle_options+typos", "loglik")} <= names


TINY_ACCURACY = '[accuracy]\nmin = 0.9\ndatasets = ["sample-en", "sample-es"]\nprompts = ["p0", "j0"]\n'


def test_a_stability_threshold_above_what_the_model_reaches_fails_its_gate(suite, tiny_checkpoint, tmp_path):
    # tiny.toml gates stability only where tiny's memory survives; this file gates it everywhere
    thresholds = tmp_path / "t.toml"
    thresholds.write_text(TINY_ACCURACY + "[stability]\nmin = 0.99\n")
    result = suite.runpytest_subprocess("-n", "2", "--perturbations", "typos,shuffle_options",
                                        f"--thresholds={thresholds}", "--report", "report.json",
                                        "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*_ test_stability_gate[[]sample-en/shuffle_options[]] _*",
                                 "stability 0.* is below the threshold 0.990 (n=48, 95% Wilson CI *"])
    document = report_of(suite)
    assert document["status"] == "failed"
    # tiny keeps its answers under typos and loses them when the options move
    assert failed_gates(document) == {"stability[sample-en/shuffle_options]",
                                      "stability[sample-es/shuffle_options]"}
    assert {g["name"] for g in document["gates"] if g["passed"]} >= {"stability[sample-en/typos]"}


def test_a_compliance_threshold_above_what_the_model_reaches_fails_its_gate(suite, tiny_checkpoint, tmp_path):
    thresholds = tmp_path / "t.toml"
    thresholds.write_text(TINY_ACCURACY + '[compliance]\nmin = 0.99\nprompts = ["j0"]\n')
    result = suite.runpytest_subprocess("--mode", "generate", "--perturbations", "relabel_numeric",
                                        f"--thresholds={thresholds}", "--report", "report.json",
                                        "-p", "no:cacheprovider")
    assert result.ret == 1
    result.assert_outcomes(passed=96 * 2 + 2 + 2, failed=2)  # cases, accuracy and original compliance gates
    document = report_of(suite)
    assert document["status"] == "failed"
    assert failed_gates(document) == {"compliance[sample-en/relabel_numeric]",
                                      "compliance[sample-es/relabel_numeric]"}
    # Answering with a letter the relabelled item does not offer is measured, not a crash.
    relabelled = [c for c in document["cases"] if c["perturbation"] == "relabel_numeric"]
    assert not any(c["schema_valid"] for c in relabelled)
    assert all(c["predicted_label"] is None and c["correct"] is False for c in relabelled)


@pytest.mark.parametrize("spec, message", [
    ("typoz", "*unknown perturbation 'typoz'; known: shuffle_options, *; sets: one-step, two-step*"),
    ("add_nota_distractor+shuffle_options", "*cannot compose add_nota_distractor+shuffle_options*last*"),
])
def test_bad_perturbations_are_usage_errors(suite, spec, message):
    result = suite.runpytest_subprocess("--perturbations", spec, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_command_line_threshold_changes_the_number_not_where_the_gate_applies(suite):
    # tiny.toml gates accuracy on the sample items under p0 and j0 only, each prompt on its own
    result = suite.runpytest_subprocess("--prompts=all", "--threshold=accuracy=0.95", "--collect-only", "-q",
                                        "-p", "no:cacheprovider")
    gates = sorted(line for line in result.stdout.lines if "test_accuracy_gate" in line)
    assert gates == ["test_gates.py::test_accuracy_gate[sample-en/p0]", "test_gates.py::test_accuracy_gate[sample-es/p0]"]
