"""README's exit-status table, case by case, on whole sessions; report paths that are not files;
non-finite scores in strict JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
from pathlib import Path

import pytest

from medgate.report.document import ReportPathError, json_text, write_json_atomic
from session_reports import report_of, strict_json

pytestmark = pytest.mark.slow
NO_CACHE = ("--no-prediction-cache", "-p", "no:cacheprovider")
GOOD_ITEM = ('{"id": "a", "dataset": "mine", "language": "en", "question": "q?", "options": '
             '[{"label": "A", "text": "x"}, {"label": "B", "text": "y"}, {"label": "C", "text": "z"}], "answer": "A"}')


def test_bad_item_data_under_xdist_exits_2_as_serially(suite, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD_ITEM + "\n" + GOOD_ITEM.replace('"answer": "A"', '"answer": "Q"').replace('"a"', '"b"') + "\n")
    for workers in ((), ("-n", "2")):
        result = suite.runpytest_subprocess(f"--dataset={bad}", *workers, "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.INTERRUPTED, (workers, result.stdout.str())
        assert f"{bad}:2: answer: 'Q' is not one of the option labels" in result.stdout.str()


def test_a_malformed_thresholds_file_is_a_usage_error_naming_file_and_line(suite, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[accuracy]\nmin = 0.5\n[stability\nmin = 0.5\n")
    result = suite.runpytest_subprocess(f"--thresholds={broken}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*{broken}: not valid TOML: *(at line 3, column *)*"])


def test_a_misspelt_dataset_in_a_thresholds_file_stops_collection_rather_than_gate_nothing(suite, tmp_path):
    thresholds = tmp_path / "t.toml"
    thresholds.write_text('[accuracy]\nmin = 0.5\ndatasets = ["smple-en"]\n')
    for workers in ((), ("-n", "2")):
        result = suite.runpytest_subprocess(f"--thresholds={thresholds}", *workers, "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.INTERRUPTED, (workers, result.stdout.str())
        result.stdout.fnmatch_lines(["*[[]accuracy[]] datasets: 'smple-en': no dataset of this run and no registered*"])


def test_a_prompt_or_dataset_given_twice_runs_once(suite):
    result = suite.runpytest_subprocess("--prompts=p0,p0", "--dataset=sample-en", "--dataset=sample-en",
                                        "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=48 + 1)  # 48 cases and the accuracy gate


@pytest.mark.parametrize(("arguments", "environment", "message"), [
    ((), {"MEDGATE_CACHE_DIR": "{file}"}, "*medgate: MEDGATE_CACHE_DIR {file} is no usable folder: File exists*"),
    (("--model=",), {}, "*argument --model: the model name is empty*"),
    (("--dataset={folder}",), {}, "*item file {folder} is a folder, not a .jsonl file*"),
    (("--report=",), {}, "*argument --report: an empty path*"),
    (("--report={file}/r.json",), {}, "*--report {file}/r.json: {file} is not a folder*"),
    (("--report=" + "a" * 250 + ".json",), {}, "*a file name over 239 bytes cannot be written*"),
])
def test_unusable_places_and_names_are_usage_errors(suite, tmp_path, monkeypatch, arguments, environment, message):
    places = {"file": tmp_path / "a-file", "folder": tmp_path / "items.jsonl"}
    places["file"].write_text("x")
    places["folder"].mkdir()
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(**places))
    result = suite.runpytest_subprocess(*(a.format(**places) for a in arguments), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([message.format(**places)])


def test_a_generation_budget_over_half_the_context_is_one_clear_error(suite):
    result = suite.runpytest_subprocess("--mode=generate", "--max-new-tokens=1024", "-p", "no:cacheprovider")
    assert result.ret == 3, result.stdout.str()
    result.stdout.fnmatch_lines(["*--max-new-tokens 1024 leaves too little of the model's context (1024 tokens) "
                                 "for the prompt: use at most 512*"])


def test_help_lists_the_medgate_options_and_exits_0(suite):
    result = suite.runpytest_subprocess("--help", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["medgate: clinical language model release gates:", "*--model=MEDGATE_MODEL*"])


@pytest.mark.parametrize("value", ["nan", "inf", "1.5", '"high"'])
def test_a_threshold_that_is_no_share_is_refused(suite, tmp_path, value):
    thresholds = tmp_path / "t.toml"
    thresholds.write_text(f"[accuracy]\nmin = {value}\n")
    result = suite.runpytest_subprocess(f"--thresholds={thresholds}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{thresholds}: [[]accuracy[]] min = *: a threshold must be a number in [[]0, 1[]]*"])


@pytest.mark.parametrize("workers", [(), ("-n", "2")])
def test_failing_gates_with_an_unwritable_report_exit_3(suite, untrained_checkpoint, workers):
    # A disk that fills up during the run: no real part does that on demand (and as root no
    # permission stops a write), so the write itself fails here, in the controller only.
    suite.makeconftest("""
import errno
import medgate.pytest_controller as controller

def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        def full(document, path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        controller.write_json_atomic = full
""")
    result = suite.runpytest_subprocess(f"--model={untrained_checkpoint}", "--threshold", "accuracy=0.9",
                                        "--report=report.json", *workers, *NO_CACHE)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*could not write the report to report.json: *No space left on device*"])


def test_a_report_path_under_a_file_is_refused_before_the_run(suite):
    (suite.path / "not-a-folder").write_text("a file where the report's folder should be\n")
    result = suite.runpytest_subprocess("--report=not-a-folder/report.json", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "passed" not in result.stdout.str()
    result.stderr.fnmatch_lines(["*--report not-a-folder/report.json: */not-a-folder is not a folder*"])


@pytest.mark.parametrize("workers", [(), ("-n", "2")])
def test_a_model_that_cannot_be_loaded_is_one_clear_error(suite, tmp_path, workers):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # and no tokenizer.json
    result = suite.runpytest_subprocess(f"--model={broken}", "--report=report.json", *workers, *NO_CACHE)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, output
    assert "Traceback" not in output and "INTERNALERROR" not in output and "During handling" not in output
    failures = [line for line in result.stdout.lines if line.startswith(("FAILED", "ERROR"))]
    assert 1 <= len(failures) <= (2 if workers else 1)  # one per worker at most, not one per case
    assert all("medgate: " in line for line in failures)  # pytest shortens the line; the message is below
    document = report_of(suite)
    assert document["status"] == "incomplete" and len(document["missing_cases"]) >= 94
    assert document["errors"] and document["errors"][0].startswith("the model could not be loaded, so no case ran")
    result.stdout.fnmatch_lines([f"medgate: the model could not be loaded: model '{broken}': loading the tokenizer "
                                 "failed: TokenizerError: * has no tokenizer.json*",
                                 "*the model could not be loaded, so no case ran: model *"])


def test_a_tokenizer_json_that_is_no_tokenizer_is_one_load_error_not_one_per_case(suite, tiny_checkpoint, tmp_path):
    garbage = tmp_path / "garbage-tokenizer"
    shutil.copytree(tiny_checkpoint, garbage)
    (garbage / "tokenizer.json").write_text("{]")
    result = suite.runpytest_subprocess(f"--model={garbage}", "--report=report.json", "--dataset=sample-en", *NO_CACHE)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, result.stdout.str()
    assert "Traceback" not in result.stdout.str()
    assert len([line for line in result.stdout.lines if line.startswith(("FAILED", "ERROR"))]) == 1
    result.stdout.fnmatch_lines([f"*using the tokenizer failed: TokenizerError: {garbage / 'tokenizer.json'}: not a "
                                 "tokenizer the tokenizers library reads*"])


def test_a_failed_export_says_why_in_the_report(suite, tiny_checkpoint, tmp_path):
    unknown = tmp_path / "unknown-architecture"
    shutil.copytree(tiny_checkpoint, unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "bert_bogus"}))
    result = suite.runpytest_subprocess(f"--model={unknown}", "--report=report.json", "--dataset=sample-en", *NO_CACHE)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, result.stdout.str()
    error = report_of(suite)["errors"][0]
    assert f"ONNX export of {unknown} failed (exit 1): ValueError: The checkpoint you are trying to load has model " \
           "type `bert_bogus`" in error


@pytest.mark.skipif(os.geteuid() != 0 and not os.access("/dev", os.W_OK),
                    reason="only where /dev is writable (as root) could a rename replace the device node")
@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_report_path_that_is_a_device_is_refused_and_left_alone(suite, device):
    before = os.stat(device)
    result = suite.runpytest_subprocess(f"--report={device}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--report {device} exists and is a device or other special file*"])
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not Path(device + ".md").exists() and not Path(device + ".html").exists()


def test_the_writer_refuses_a_fifo_a_folder_and_a_link_to_a_device(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    for target in (fifo, tmp_path, link):
        with pytest.raises(ReportPathError, match="not a regular file"):
            write_json_atomic({"x": 1}, target)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()


def test_non_finite_numbers_are_written_as_null():
    text = json_text({"scores": {"A": math.nan, "B": -math.inf, "C": -1.5}, "n": [math.inf]})
    assert strict_json(text) == {"scores": {"A": None, "B": None, "C": -1.5}, "n": [None]}


@pytest.fixture(scope="module")
def nan_model(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every logit NaN. Built here, not inside a test: pytester restores
    sys.modules after each test, and numpy cannot be imported twice in one process."""
    from safetensors.numpy import load_file, save_file

    model = tmp_path_factory.mktemp("nan") / "nan-model"
    shutil.copytree(tiny_checkpoint, model)
    weights = load_file(model / "model.safetensors")
    weights["model.norm.weight"][:] = math.nan
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    return model


def test_a_model_giving_nan_scores_writes_strict_json_with_the_flag(suite, nan_model):
    result = suite.runpytest_subprocess(f"--model={nan_model}", "--report=report.json", "-k", "sample-en and 000",
                                        *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the cases fail: scores contain NaN
    text = (suite.path / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    cases = report_of(suite)["cases"]  # strict parse + schema
    assert len(cases) == 9 and all(c["non_finite"] and set(c["scores"].values()) == {None} for c in cases)
    # argmax over NaN would name option A, and count it right wherever A is the gold
    assert all(c["predicted_label"] is None and c["correct"] is False for c in cases)


def test_a_model_giving_nan_logits_fails_its_generated_cases_and_gets_nothing_right(suite, nan_model):
    result = suite.runpytest_subprocess(f"--model={nan_model}", "--report=report.json", "--mode=generate",
                                        "-k", "sample-en and 000", *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*NaN or inf in the generation logits*"])
    cases = report_of(suite)["cases"]
    assert len(cases) == 9
    for case in cases:
        assert case["non_finite"] and case["stop_reason"] == "non_finite" and case["generated_tokens"] == 0
        assert case["predicted_label"] is None and case["correct"] is False
