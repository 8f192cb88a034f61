"""`medgate diff A.json B.json`: formats, regression gates and exit statuses, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from medgate.cli import main
from medgate.compare import load_report
from medgate.report import write_json_atomic
from medgate.report.document import json_text
from medgate.schemas import load_schema
from report_factory import Design, Population, make_report, simulate_records

DESIGN = Design(items=40, perturbations=("original", "shuffle"))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diff")
    population = Population(DESIGN, seed=5)
    base = simulate_records(population, 2.0, np.random.default_rng(1))
    worse = simulate_records(population, 2.0, np.random.default_rng(1), drop={("synth-en", "original", "p0"): 4.0})
    paths = {}
    for name, records in (("base", base), ("worse", worse)):
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(make_report(records, run_id=name)))
    return paths


def test_json_output_is_the_schema_s_comparison_with_regression_gates(reports, tmp_path, capsys):
    out = tmp_path / "diff.json"
    status = main(["diff", str(reports["base"]), str(reports["worse"]), "--format", "json", "--out", str(out),
                   "--fail-on-regression", "accuracy:5pp"])
    assert status == 1
    comparison = json.loads(out.read_text())
    schema = load_schema("report")
    validator = Draft202012Validator({**schema["$defs"]["comparison"], "$defs": schema["$defs"]})
    assert [e.message for e in validator.iter_errors(comparison)] == []
    assert comparison["baseline"]["path"] == str(reports["base"])
    failed = [g["name"] for g in comparison["regressions"] if g["passed"] is False]
    assert failed == ["regression:accuracy:5pp/synth-en"]
    err = capsys.readouterr().err
    assert "regression gates: 1 of 8 failed" in err and "FAILED regression:accuracy:5pp/synth-en" in err


def test_a_report_diffed_with_itself_passes(reports, capsys):
    status = main(["diff", str(reports["base"]), str(reports["base"]), "--fail-on-regression", "accuracy:0pp",
                   "--fail-on-regression", "stability:0pp"])
    assert status == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# medgate diff `base` → `base`")
    assert "Flipped: **0 correct → wrong**, 0 wrong → correct" in captured.out
    assert "regression gates: 0 of 12 failed" in captured.err


def test_html_output_is_a_page_with_the_comparison(reports, tmp_path):
    out = tmp_path / "diff.html"
    assert main(["diff", str(reports["base"]), str(reports["worse"]), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="chart chart-deltas"' in page
    assert "baseline answer" in page  # the case table shows both runs' answers


def test_unreadable_reports_are_clear_errors(reports, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": "0.9", "cases": [], "manifest": {}}')
    twice = tmp_path / "twice.json"
    document = json.loads(reports["base"].read_text())
    document["cases"].append(document["cases"][0])
    twice.write_text(json.dumps(document))
    assert main(["diff", str(reports["base"]), str(tmp_path / "nope.json")]) == 2
    assert main(["diff", str(reports["base"]), str(broken)]) == 2
    assert main(["diff", str(twice), str(reports["base"])]) == 2
    err = capsys.readouterr().err
    assert "nope.json: no such report" in err
    assert "broken.json: report schema version '0.9'; this medgate reads '1.0' and '2.0'" in err
    assert "twice.json: case synth-en/00000/original/p0 appears twice" in err


def test_bad_options_are_usage_errors(reports, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(reports["base"]), str(reports["worse"]), "--fail-on-regression", "accuracy"])
    assert exit_info.value.code == 2
    assert "expects METRIC:MARGINpp" in capsys.readouterr().err


def test_diff_imports_no_inference_library(reports, tmp_path):
    script = (f"import sys; from medgate.cli import main; main(['diff', {str(reports['base'])!r}, "
              f"{str(reports['worse'])!r}, '--format', 'json', '--out', {str(tmp_path / 'x.json')!r}]); "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'onnxruntime', 'torch', 'transformers', "
              "'optimum', 'tokenizers', 'scipy'}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_schema_2_writes_each_item_once_and_reads_back_every_case_whole(reports, tmp_path):
    document = json.loads(reports["base"].read_text())  # every case with its own question and options
    edited = next(i for i, c in enumerate(document["cases"]) if c["case_id"] == "synth-en/00001/original/p1")
    document["cases"][edited] = {**document["cases"][edited], "question": "edited by hand"}  # not as its item
    written = tmp_path / "v2.json"
    write_json_atomic(document, written)
    raw = json.loads(written.read_text())
    assert raw["schema_version"] == "2.0"
    assert len(raw["items"]) == 2 * 40 * 2  # datasets x items x perturbations; the prompts share them
    inline = [c["case_id"] for c in raw["cases"] if "question" in c]
    assert inline == [document["cases"][edited]["case_id"]]  # kept whole, not replaced by its item's question
    assert written.stat().st_size < 0.8 * len(json_text(document).encode())  # schema 1.0's compact JSON
    assert load_report(written)["cases"] == document["cases"]


def test_a_1_0_report_and_a_2_0_report_compare_as_two_2_0_reports(reports, tmp_path):
    old = json.loads(reports["base"].read_text())
    old["schema_version"] = "1.0"
    (tmp_path / "old.json").write_text(json.dumps(old))
    write_json_atomic(json.loads(reports["worse"].read_text()), tmp_path / "new.json")
    write_json_atomic(json.loads(reports["base"].read_text()), tmp_path / "base2.json")
    outputs = []
    for base in ("old.json", "base2.json"):
        out = tmp_path / f"{base}.diff.json"
        assert main(["diff", str(tmp_path / base), str(tmp_path / "new.json"), "--format", "json",
                     "--out", str(out)]) == 0
        comparison = json.loads(out.read_text())
        comparison.pop("baseline")  # names the file
        outputs.append(comparison)
    assert outputs[0] == outputs[1] and outputs[0]["flips"]["items"]
    assert outputs[0]["flips"]["items"][0]["question"].startswith("Question ")


def test_a_case_whose_item_is_missing_is_a_clear_error(reports, tmp_path, capsys):
    write_json_atomic(json.loads(reports["base"].read_text()), tmp_path / "v2.json")
    raw = json.loads((tmp_path / "v2.json").read_text())
    del raw["items"]["synth-en/00003/shuffle"]
    (tmp_path / "cut.json").write_text(json.dumps(raw))
    assert main(["diff", str(reports["base"]), str(tmp_path / "cut.json")]) == 2
    err = capsys.readouterr().err
    assert "cut.json: cases[" in err and "has no question and `items` has no 'synth-en/00003/shuffle'" in err
