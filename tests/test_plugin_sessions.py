"""Whole medgate sessions in subprocesses (pytester), serial and under xdist."""

import json

import pytest

from session_reports import report_of

pytestmark = pytest.mark.slow




def labels(document: dict) -> dict[str, str]:
    return {c["case_id"]: c["predicted_label"] for c in document["cases"]}


def test_two_workers_run_the_suite_and_merge_every_case(suite, tiny_checkpoint):
    result = suite.runpytest_subprocess("-n", "2", "--report", "report.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=98)
    result.stdout.fnmatch_lines(["*accuracy[[]sample-en[]]*PASS*", "*accuracy[[]sample-es[]]*PASS*",
                                 "report: *report.json"])
    document = report_of(suite)
    assert document["status"] == "passed"
    assert len(document["cases"]) == 96 and {c["language"] for c in document["cases"]} == {"en", "es"}
    assert document["manifest"]["execution_provider"] == "CPUExecutionProvider"
    assert document["manifest"]["model"]["fingerprint"]
    assert len(document["manifest"]["workers"]) == 2
    first = document["cases"][0]
    assert first["case_id"] == "sample-en/0001/original/p0"
    assert set(first["scores"]) == {o["label"] for o in first["options_presented"]}


def test_four_workers_give_the_same_predictions_as_a_serial_run(suite, tiny_checkpoint):
    fresh = ("--no-prediction-cache", "-p", "no:cacheprovider")  # both runs must really predict
    suite.runpytest_subprocess("--report", "serial.json", "--mode", "both", *fresh)
    suite.runpytest_subprocess("-n", "4", "--report", "parallel.json", "--mode", "both", *fresh)
    serial, parallel = report_of(suite, "serial.json"), report_of(suite, "parallel.json")
    assert len(serial["cases"]) == 192
    assert labels(serial) == labels(parallel)
    assert [c["case_id"] for c in serial["cases"]] == [c["case_id"] for c in parallel["cases"]]


def test_untrained_model_fails_the_accuracy_gate_and_still_writes_the_report(suite, untrained_checkpoint):
    result = suite.runpytest_subprocess(f"--model={untrained_checkpoint}", "--threshold", "accuracy=0.9",
                                        "--report", "report.json", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*_ test_accuracy_gate[[]sample-en[]] _*",
                                 "accuracy 0.* is below the threshold 0.900 (n=48, 95% Wilson CI *",
                                 "FAILED test_gates.py::test_accuracy_gate[[]sample-en[]]*"])
    document = report_of(suite)
    assert document["status"] == "failed"
    failed = [g for g in document["gates"] if g["passed"] is False]
    assert {g["name"] for g in failed} == {"accuracy[sample-en]", "accuracy[sample-es]"}


def test_gates_fail_the_same_way_under_xdist(suite, untrained_checkpoint):
    result = suite.runpytest_subprocess("-n", "2", f"--model={untrained_checkpoint}", "--threshold",
                                        "accuracy=0.9", "--report", "report.json", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.assert_outcomes(passed=96, failed=2)
    assert "INTERNALERROR" not in result.stdout.str()
    assert report_of(suite)["status"] == "failed"


def test_malformed_item_file_stops_collection_with_file_and_line(suite, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = ('{"id": "a", "dataset": "mine", "language": "en", "question": "q?", "options": '
            '[{"label": "A", "text": "x"}, {"label": "B", "text": "y"}, {"label": "C", "text": "z"}], "answer": "A"}')
    bad.write_text(good + "\n" + good.replace('"answer": "A"', '"answer": "Q"').replace('"a"', '"b"') + "\n")
    result = suite.runpytest_subprocess(f"--dataset={bad}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # "Interrupted: 1 error during collection"
    result.stdout.fnmatch_lines([f"medgate: {bad}:2: answer: 'Q' is not one of the option labels*",
                                 "*1 error during collection*"])


@pytest.mark.parametrize("arguments, message", [
    (["--threshold", "accuracy=1.7"], "*--threshold*outside*"),
    (["--threshold", "accuracy"], "*--threshold expects NAME=VALUE*"),
    (["--model", "no-such-model"], "*unknown model 'no-such-model'*tiny*marmoka-8b*"),
    (["--dataset", "no-such-dataset"], "*unknown dataset 'no-such-dataset'; known datasets:*sample-en*"),
    (["--limit", "0"], "*--limit*positive*"),
])
def test_usage_errors_are_clear(suite, arguments, message):
    result = suite.runpytest_subprocess(*arguments, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_record_prompts_stores_the_exact_text_and_continuations(suite, tiny_checkpoint):
    suite.runpytest_subprocess("--record-prompts", "--report", "report.json", "-p", "no:cacheprovider")
    case = report_of(suite)["cases"][0]
    assert case["prompt_text"].startswith("Question: ") and case["prompt_text"].endswith("\nAnswer:")
    assert case["continuations"] == {o["label"]: " " + o["label"] for o in case["options_presented"]}


def test_interrupted_run_writes_a_report_that_says_so(suite, tiny_checkpoint):
    suite.makeconftest("""
        seen = []
        def pytest_runtest_logreport(report):
            if report.when == "call":
                seen.append(report.nodeid)
                if len(seen) == 10:
                    raise KeyboardInterrupt
    """)
    result = suite.runpytest_subprocess("--report", "report.json", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    document = report_of(suite)
    assert document["status"] == "interrupted"
    assert 9 <= len(document["cases"]) <= 10


def test_default_report_path_is_under_reports(suite, tiny_checkpoint):
    suite.runpytest_subprocess("-p", "no:cacheprovider", "-k", "sample-en and 000")
    written = list((suite.path / "reports").glob("*-tiny.json"))
    assert len(written) == 1
    assert len(json.loads(written[0].read_text())["cases"]) == 9


def test_plain_pytest_runs_without_medgate_cases_write_no_report(pytester: pytest.Pytester):
    pytester.makepyfile("def test_ok(): pass")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_prediction_cache_serves_an_unchanged_rerun_and_a_gate_only_change(suite, tiny_checkpoint, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    # The tiny model itself is reused from the shared cache through its folder.
    model = f"--model={tiny_checkpoint}"
    suite.runpytest_subprocess(model, "--report", "first.json", "-p", "no:cacheprovider")
    suite.runpytest_subprocess(model, "--threshold", "accuracy=0.5", "--report", "second.json", "-p", "no:cacheprovider")
    first, second = report_of(suite, "first.json"), report_of(suite, "second.json")
    assert first["manifest"]["prediction_cache"] == {"hits": 0, "misses": 96}
    assert second["manifest"]["prediction_cache"] == {"hits": 96, "misses": 0}
    assert second["manifest"]["execution_provider"] == "CPUExecutionProvider"
    assert [c["scores"] for c in first["cases"]] == [c["scores"] for c in second["cases"]]
    assert {g["threshold"] for g in second["gates"]} == {0.5}
    # The other computation path (whole prompts) never reads what the shared-prefix path wrote.
    suite.runpytest_subprocess(model, "--no-prefix-sharing", "--report", "third.json", "-p", "no:cacheprovider")
    third = report_of(suite, "third.json")
    assert third["manifest"]["prediction_cache"] == {"hits": 0, "misses": 96}
    assert [c["predicted_label"] for c in third["cases"]] == [c["predicted_label"] for c in first["cases"]]


def test_each_group_is_predicted_once_under_xdist(suite, tiny_checkpoint):
    suite.runpytest_subprocess("-n", "2", "--report", "report.json", "--no-prediction-cache", "-p", "no:cacheprovider")
    document = report_of(suite)
    workers = document["manifest"]["workers"].values()
    predicted = sum(worker["stats"]["cases"] for worker in workers)
    assert predicted == len(document["cases"]) == 96
    assert all(worker["stats"]["cases"] > 0 for worker in workers)  # both workers had groups
