"""Whole sessions with --save-baseline, --compare and --fail-on-regression, and a worker killed mid-run."""

import json
import re

import pytest
from session_reports import report_of

pytestmark = pytest.mark.slow

NO_CACHE = ("-p", "no:cacheprovider")


def test_a_saved_baseline_compared_with_the_same_model_passes_every_regression_gate(suite, tiny_checkpoint):
    saved = suite.runpytest_subprocess("--save-baseline", "v1", "--report", "first.json", *NO_CACHE)
    assert saved.ret == 0
    saved.stdout.fnmatch_lines(["baseline saved: *reports/baselines/tiny/v1.json"])
    baseline = json.loads((suite.path / "reports/baselines/tiny/v1.json").read_text())
    assert baseline["status"] == "passed" and len(baseline["cases"]) == 96 and "comparison" not in baseline

    result = suite.runpytest_subprocess("--compare", "v1", "--fail-on-regression", "accuracy:0pp",
                                        "--fail-on-regression", "crosslingual_agreement:0pp",
                                        "--report", "report.json", *NO_CACHE)
    assert result.ret == 0
    result.assert_outcomes(passed=96 + 2 + 3)  # cases, threshold gates, regression gates
    result.stdout.fnmatch_lines([
        "compared with *-tiny (*reports/baselines/tiny/v1.json): 96 shared cases, 0 only in the baseline, "
        "0 only in this run; 0 correct -> wrong, 0 wrong -> correct; same checkpoint",
        "regression:accuracy:0pp/sample-en *1.000 *1.000 *+0.0pp *1  PASS",
    ])
    document = report_of(suite)
    comparison = document["comparison"]
    assert comparison["same_checkpoint"] is True
    assert comparison["flips"]["correct_to_wrong"] == comparison["flips"]["wrong_to_correct"] == 0
    regressions = [g for g in document["gates"] if g.get("kind") == "regression"]
    assert {g["name"] for g in regressions} == {"regression:accuracy:0pp/sample-en", "regression:accuracy:0pp/sample-es",
                                                "regression:crosslingual_agreement:0pp/sample-en|sample-es"}
    assert all(g["passed"] for g in regressions)
    assert (suite.path / "report.md").read_text().startswith("# medgate report")
    assert "Comparison" in (suite.path / "report.html").read_text()


def test_a_worse_checkpoint_fails_its_regression_gates_under_xdist(suite, tiny_checkpoint, untrained_checkpoint):
    suite.runpytest_subprocess("--report", "base.json", *NO_CACHE)
    result = suite.runpytest_subprocess("-n", "2", f"--model={untrained_checkpoint}", "--compare", "base.json",
                                        "--fail-on-regression", "accuracy:2pp", "--report", "report.json", *NO_CACHE)
    assert result.ret == 1
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*_ test_regression_gate[[]accuracy:2pp/sample-en[]] _*",
                                 "accuracy fell by more than 2 pp with a significant drop in 1 cell(s)*",
                                 "FAILED test_gates.py::test_regression_gate[[]accuracy:2pp/sample-en[]]*"])
    document = report_of(suite)
    assert document["status"] == "failed"
    cell = next(c for c in document["comparison"]["cells"] if c["metric"] == "accuracy"
                and c["dataset"] == "sample-en")
    assert cell["delta"] < -0.5 and cell["p_adjusted"] < 1e-6 and cell["worse"] > 30
    flips = document["comparison"]["flips"]
    assert flips["correct_to_wrong"] == sum(1 for c in document["cases"] if not c["correct"])
    assert "Flipped correct → wrong" in (suite.path / "report.md").read_text()


@pytest.mark.parametrize("arguments, message", [
    (["--compare", "v9"], "*--compare v9: no baseline */reports/baselines/tiny/v9.json; no baselines saved for tiny*"),
    (["--compare", "missing.json"], "*--compare missing.json: no such report file*"),
    (["--fail-on-regression", "accuracy:0pp"], "*--fail-on-regression needs a baseline to compare with*"),
    (["--compare", "x.json", "--fail-on-regression", "accuracy:2"], "*expects METRIC:MARGINpp, e.g. accuracy:2pp*"),
    (["--compare", "x.json", "--fail-on-regression", "speed:2pp"], "*unknown metric 'speed'*"),
    (["--save-baseline", "../v1"], "*baseline name '../v1': use up to 100 letters, digits*"),
])
def test_comparison_usage_errors_are_clear(suite, arguments, message):
    (suite.path / "broken.json").write_text("{not json")
    result = suite.runpytest_subprocess(*arguments, *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_broken_baseline_is_a_usage_error(suite):
    (suite.path / "broken.json").write_text("{not json")
    result = suite.runpytest_subprocess("--compare", "broken.json", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.json: not a JSON report*"])


KILL_SECOND_WORKER = """
import os, signal
seen = []
def pytest_runtest_call(item):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1" and "test_mcqa" in item.nodeid:
        seen.append(item.nodeid)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_killed_mid_run_makes_an_incomplete_report_and_a_failed_session(suite, tiny_checkpoint):
    suite.makeconftest(KILL_SECOND_WORKER)
    result = suite.runpytest_subprocess("-n", "2", "--report", "report.json", "--save-baseline", "v1", *NO_CACHE,
                                        timeout=300)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    document = report_of(suite)
    missing = document["missing_cases"]
    assert document["status"] == "incomplete" and document["summary"]["missing_cases"] == len(missing) > 0
    assert len(document["cases"]) + len(missing) == 96
    assert all(re.fullmatch(r"sample-e[ns]/\d{4}/original/p0", m) for m in missing)  # case ids, not node ids
    assert "gw1" in document["manifest"]["crashed_workers"]
    result.stdout.fnmatch_lines([
        f"worker gw1 died (*) while running test_mcqa[[]*[]]; the run is incomplete: {len(missing)} of 96 case(s) "
        "have no result (listed in the report's missing_cases)",
        "baseline not saved: --save-baseline v1: the run is incomplete; an incomplete run is no baseline",
    ])
    assert not (suite.path / "reports/baselines").exists()
    html = (suite.path / "report.html").read_text()
    assert f"Missing cases ({len(missing)})" in html
