"""Regression gates never pass on nothing: a baseline sharing no case, a rule without a block, an
unfinished baseline (warned about), in `pytest --compare` and in `medgate diff`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medgate.cli import main
from report_factory import Design, Population, make_report, simulate_records
from session_reports import read_report, report_of, strict_json

NO_CACHE = ("--no-prediction-cache", "-p", "no:cacheprovider")


def synthetic(path, status: str = "passed", datasets=("synth-en", "synth-es")):
    records = simulate_records(Population(Design(datasets=datasets, items=20), seed=1), 2.0,
                               np.random.default_rng(1))
    document = make_report(records, run_id=path.stem)
    if status != "passed":
        document["status"] = status
        document["missing_cases"] = ["synth-en/00099/original/p0"]
        document["summary"]["missing_cases"] = 1
    path.write_text(json.dumps(document))
    return path


def test_diff_with_no_shared_case_fails_its_regression_rule(tmp_path, capsys):
    base = synthetic(tmp_path / "base.json", datasets=("other-en",))
    current = synthetic(tmp_path / "current.json")
    out = tmp_path / "diff.json"
    status = main(["diff", str(base), str(current), "--format", "json", "--out", str(out),
                   "--fail-on-regression", "accuracy:0pp"])
    assert status == 1
    err = capsys.readouterr().err
    assert "FAILED regression:accuracy:0pp" in err and "the reports share no case" in err
    assert "a regression gate with nothing to compare fails" in err
    assert "warning: the baseline shares no case with this run" in err
    comparison = strict_json(out.read_text())
    assert [g["passed"] for g in comparison["regressions"]] == [False]


def test_diff_without_rules_still_exits_0_and_warns_about_an_incomplete_baseline(tmp_path, capsys):
    base = synthetic(tmp_path / "base.json", status="incomplete")
    current = synthetic(tmp_path / "current.json")
    out = tmp_path / "diff.json"
    assert main(["diff", str(base), str(current), "--format", "json", "--out", str(out)]) == 0
    assert "warning: the baseline base is incomplete (1 case(s) without a result)" in capsys.readouterr().err
    assert any("is incomplete" in w for w in strict_json(out.read_text())["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")])
def test_compare_with_a_baseline_sharing_no_case_fails_the_session(suite, tiny_checkpoint, tmp_path, workers):
    base = synthetic(tmp_path / "base.json")
    result = suite.runpytest_subprocess(f"--compare={base}", "--fail-on-regression", "accuracy:0pp",
                                        "--report=report.json", *workers, *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["*_ test_regression_gate[[]accuracy:0pp/sample-en[]] _*",
                                 "accuracy [[]sample-en, original, loglik[]]: not in the baseline; a regression gate "
                                 "with nothing to compare fails",
                                 "*warning: the baseline shares no case with this run: nothing was compared*"])
    document = report_of(suite)
    regression = [g for g in document["gates"] if g.get("kind") == "regression"]
    assert regression and all(g["passed"] is False for g in regression)
    assert "the baseline shares no case with this run: nothing was compared" in document["warnings"]


@pytest.mark.slow
def test_a_rule_with_no_block_in_the_run_fails_and_an_incomplete_baseline_is_warned_about(suite, tiny_checkpoint):
    suite.runpytest_subprocess("--report=base.json", *NO_CACHE)
    base = read_report(suite.path / "base.json")
    base["status"] = "incomplete"  # as if a worker had died: the answered cases are still comparable
    (suite.path / "base.json").write_text(json.dumps(base))
    # No perturbation in this run: stability has no block to gate.
    result = suite.runpytest_subprocess("--compare=base.json", "--fail-on-regression", "stability:0pp",
                                        "--report=report.json", *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*(the baseline is incomplete: see the warning at the end)*",
        "*--fail-on-regression stability:0pp: this run has no stability block to compare; a regression gate "
        "with nothing to compare fails*",
        "*warning: the baseline * is incomplete*"])
    document = report_of(suite)
    assert document["status"] == "failed"
    assert [g["name"] for g in document["gates"] if g["passed"] is False] == ["regression:stability:0pp"]
    assert any("is incomplete" in w for w in document["warnings"])
