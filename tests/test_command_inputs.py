"""The `medgate` commands given wrong input: one clean line and exit 2, nothing deleted or left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medgate.tiny import COMPLETE_MARKER


def medgate(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medgate", *arguments], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, check=False)


def one_clean_error(completed: subprocess.CompletedProcess[str], expected: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert expected in completed.stderr, completed.stderr


def test_make_tiny_force_never_deletes_a_folder_that_holds_no_tiny_build(tmp_path):
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "sub" / "important.txt").write_text("keep me")
    one_clean_error(medgate("make-tiny", str(precious), "--untrained", "--force"), "holds no tiny build")
    assert (precious / "sub" / "important.txt").read_text() == "keep me"


def test_make_tiny_refuses_a_file_and_a_path_under_a_file(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    one_clean_error(medgate("make-tiny", str(afile), "--untrained", "--force"), "exists and is not a folder")
    one_clean_error(medgate("make-tiny", str(afile / "x"), "--untrained"), f"{afile} is not a folder")
    assert afile.read_text() == "x"


@pytest.mark.parametrize("noise", ["nan", "inf", "-1"])
def test_make_tiny_refuses_a_noise_that_is_no_finite_non_negative_number(tmp_path, noise):
    one_clean_error(medgate("make-tiny", str(tmp_path / "t"), f"--noise={noise}"), "--noise must be a finite number")
    assert not (tmp_path / "t").exists()


def test_make_tiny_replaces_a_tiny_build_only_with_force(tmp_path):
    out = tmp_path / "tiny"
    assert medgate("make-tiny", str(out), "--untrained", "--quiet").returncode == 0
    first = json.loads((out / COMPLETE_MARKER).read_text())
    one_clean_error(medgate("make-tiny", str(out), "--untrained", "--quiet"), "use --force to replace it")
    replaced = medgate("make-tiny", str(out), "--untrained", "--quiet", "--force", "--seed", "1")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / COMPLETE_MARKER).read_text())["recipe"] != first["recipe"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no staging folder left beside it


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--prompts", "nosuch"], "unknown prompt(s) ['nosuch']"),
    (["--limit", "0"], "--limit: must be a positive integer, got 0"),
    (["--dataset", "nosuch"], "medgate parity: unknown dataset 'nosuch';"),
    (["--mode", "generate"], "unrecognized arguments: --mode generate"),  # not taken for --model
])
def test_parity_refuses_bad_arguments_before_any_work(arguments, expected):
    one_clean_error(medgate("parity", *arguments), expected)


def test_parity_and_bench_refuse_an_output_they_could_not_write_before_the_work(tmp_path):
    one_clean_error(medgate("parity", "--out", str(tmp_path)), "is a folder, not a regular file")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_clean_error(medgate("bench", "--contenders", "medgate", "--out", str(blocker / "b.json")),
                    f"{blocker} is not a folder")


def test_bench_with_an_unknown_dataset_says_so_and_leaves_no_temporary_folder(tmp_path):
    completed = medgate("bench", "--dataset", "nosuch", "--contenders", "medgate", "--no-warmup",
                        env={"TMPDIR": str(tmp_path)})
    one_clean_error(completed, "medgate bench: unknown dataset 'nosuch'")
    assert list(tmp_path.iterdir()) == []


def test_bench_names_the_prompt_that_selects_nothing_for_the_mode():
    one_clean_error(medgate("bench", "--mode", "generate", "--prompts", "p0", "--contenders", "medgate"),
                    "--prompts p0 selects no prompt for --mode generate")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    completed = subprocess.run([sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider", "-q",
                                f"--report={folder / 'run.json'}"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parents[1], timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:]
    return folder / "run.json"


def test_diff_refuses_the_same_regression_metric_twice(report):
    one_clean_error(medgate("diff", str(report), str(report), "--fail-on-regression", "accuracy:2pp",
                            "--fail-on-regression", "accuracy:3pp"), "--fail-on-regression gives accuracy twice")


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("case_id", ["x"], "cases[0].case_id must be a string"),
    ("mode", None, "cases[0].mode must be a string"),
    ("correct", "yes", "cases[0].correct must be true, false or null"),
    ("predicted_label", 1, "cases[0].predicted_label must be a string or null"),
])
def test_diff_names_a_mistyped_case_field(report, tmp_path, field, value, expected):
    document = json.loads(report.read_text())
    document["cases"][0][field] = value
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    one_clean_error(medgate("diff", str(report), str(broken)), f"{broken}: {expected}")


def test_diff_refuses_a_mistyped_manifest_and_json_nested_too_deeply(report, tmp_path):
    document = json.loads(report.read_text())
    document["manifest"]["model"] = "x"
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps(document))
    one_clean_error(medgate("diff", str(report), str(broken)), "`manifest.model` must be an object")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    one_clean_error(medgate("diff", str(deep), str(report)), "JSON nested too deeply")


@pytest.mark.parametrize(("arguments", "expected"), [
    (["all", "bogus"], "unknown dataset 'bogus'"),  # a typo beside `all` is not ignored
    (["pubmedqa", "--mirror="], "--mirror must be an http(s) or file URL"),
    (["pubmedqa", "--mirror", "http://user:secret@127.0.0.1:9/"], "--mirror must not hold credentials"),
    (["pubmedqa", "--mirror", "http://127.0.0.1:9/m?q=1"], "--mirror must not hold credentials, a query"),
    (["pubmedqa", "--data-dir="], "argument --data-dir: an empty path"),
])
def test_fetch_refuses_what_it_would_misread_before_any_download(arguments, expected):
    completed = medgate("fetch", *arguments)
    one_clean_error(completed, expected)
    assert "secret" not in completed.stderr


def test_compare_finds_a_baseline_by_its_saved_name_with_json_and_expands_a_tilde(report, tmp_path, monkeypatch):
    from medgate.compare.reports import ReportError, resolve_report, save_baseline

    saved = save_baseline({"status": "passed", "cases": []}, tmp_path, "tiny", "v1")
    assert resolve_report("v1.json", tmp_path, "tiny") == saved
    assert resolve_report("v1", tmp_path, "tiny") == saved
    with pytest.raises(ReportError, match="no such report file and no baseline .*saved baselines for tiny: v1"):
        resolve_report("v2.json", tmp_path, "tiny")
    monkeypatch.setenv("HOME", str(report.parent))
    assert resolve_report(f"~/{report.name}", tmp_path, "tiny") == report.parent / report.name


def test_diff_says_so_when_an_optional_field_is_malformed_for_the_page(report, tmp_path):
    document = json.loads(report.read_text())
    document["cases"][0]["scores"] = {"A": "x"}
    broken = tmp_path / "scores.json"
    broken.write_text(json.dumps(document))
    one_clean_error(medgate("diff", str(report), str(broken), "--format", "html"),
                    "cannot render the html page: a report holds a malformed field")
