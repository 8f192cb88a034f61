"""`medgate table`: three real runs (tiny, tiny with weight noise, untrained tiny) against tiny as the
reference, checked value by value against each run's own metrics and against `medgate diff` for each pair."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medgate.stats import holm_adjust
from medgate.table.build import METRIC_TITLES, METRICS
from session_reports import read_report

pytestmark = pytest.mark.slow

NO_CACHE = ("-p", "no:cacheprovider")
ALPHA = 0.05


@pytest.fixture(scope="module")
def noisy_checkpoint() -> Path:
    from medgate.tiny import TinyRecipe, ensure_tiny

    return ensure_tiny(TinyRecipe(noise=1.5), quiet=True)


def medgate(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medgate", *arguments], capture_output=True, text=True, check=False)


@pytest.fixture
def three_reports(suite, tiny_checkpoint, noisy_checkpoint, untrained_checkpoint) -> dict[str, Path]:
    paths = {}
    for name, model in (("tiny", "tiny"), ("noise", str(noisy_checkpoint)), ("untrained", str(untrained_checkpoint))):
        result = suite.runpytest_subprocess(f"--model={model}", "--report", f"{name}.json", "--mode=both",
                                            "--perturbations=shuffle_options,typos", *NO_CACHE)
        assert result.ret in (0, 1), result.stdout.str()[-2000:]  # the degraded models fail gates; all cases run
        paths[name] = suite.path / f"{name}.json"
    return paths


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_table_values_and_marks_match_each_report_and_medgate_diff(three_reports, tmp_path):
    paths = three_reports
    out = tmp_path / "table.csv"
    result = medgate("table", str(paths["noise"]), str(paths["untrained"]), "--reference", str(paths["tiny"]),
                     "--format", "csv", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [Path(r["path"]).stem for r in rows] == ["tiny", "noise", "untrained"]
    assert [r["reference"] for r in rows] == ["True", "False", "False"]
    columns = sorted({name.rsplit(" ", 1)[0] for name in rows[0] if name.endswith(" value")})
    assert {c.split(": ", 1)[0] for c in columns} == {"sample-en", "sample-es", "sample-en|sample-es"}
    assert any("worst-case accuracy" in c for c in columns) and any("stability" in c for c in columns)
    assert any("cross-lingual agreement" in c for c in columns)

    diffs = {}
    for name in ("noise", "untrained"):
        diff_out = tmp_path / f"{name}.diff.json"
        completed = medgate("diff", str(paths["tiny"]), str(paths[name]), "--format", "json", "--out", str(diff_out))
        assert completed.returncode == 0, completed.stderr
        diffs[name] = json.loads(diff_out.read_text())

    checked = 0
    p_values, marks = [], []
    for row, name in zip(rows, ("tiny", "noise", "untrained")):
        metrics = read_report(paths[name])["metrics"]
        for column in columns:
            cell = column_cell(column)
            own = next((m for m in metrics if (m["name"], m["dataset"], m["perturbation"], m["prompt"], m["mode"])
                        == (cell["metric"], cell["dataset"], cell["perturbation"], "*", cell["mode"])), None)
            if own is None:
                assert row[f"{column} value"] == ""
                continue
            assert _number(row[f"{column} value"]) == pytest.approx(own["value"], abs=1e-12)
            assert _number(row[f"{column} ci_low"]) == own["ci_low"]
            assert _number(row[f"{column} ci_high"]) == own["ci_high"]
            assert int(row[f"{column} n"]) == own["n"]
            if name == "tiny":
                assert row[f"{column} delta"] == "" and row[f"{column} p"] == ""
                continue
            compared = diff_cell(diffs[name], cell)
            assert compared["comparable"] is True  # the same items, prompts and perturbations in every run
            assert _number(row[f"{column} delta"]) == compared["delta"]
            assert _number(row[f"{column} delta_ci_low"]) == compared["ci_low"]
            assert _number(row[f"{column} delta_ci_high"]) == compared["ci_high"]
            assert _number(row[f"{column} p"]) == compared["p_value"]
            p_values.append(compared["p_value"])
            marks.append((row[f"{column} p_holm"], row[f"{column} significant"]))
            checked += 1
    assert checked >= 10
    adjusted = holm_adjust(p_values)  # one family: every difference of the table
    assert [float(p) for p, _ in marks] == pytest.approx(adjusted, abs=1e-12)
    assert [s == "True" for _, s in marks] == [p < ALPHA for p in adjusted]
    assert sum(s == "True" for _, s in marks) >= 2  # the untrained model is significantly worse somewhere
    assert sum(s == "False" for _, s in marks) >= 1


def test_markdown_marks_the_significant_differences_and_the_reference(three_reports, tmp_path):
    paths = three_reports
    result = medgate("table", str(paths["tiny"]), str(paths["untrained"]), "--reference", str(paths["tiny"]))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # header, the reference (listed once), the untrained model
    assert "(reference)" in lines[1] and "Δ" not in lines[1]
    assert lines[2].count("Δ") == lines[0].count(" | ")  # a difference in every column
    assert " *" in lines[2]  # at least one significant drop, marked
    assert "Holm-corrected" in text and "differences significant" in result.stderr
    for fmt, marker in (("html", '<table id="model-table">'), ("latex", r"\begin{tabular}")):
        rendered = medgate("table", str(paths["untrained"]), "--reference", str(paths["tiny"]), "--format", fmt)
        assert rendered.returncode == 0 and marker in rendered.stdout


def test_unreadable_report_is_a_usage_error(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    result = medgate("table", str(broken))
    assert result.returncode == 2 and "not a medgate report" in result.stderr


def column_cell(label: str) -> dict[str, str]:
    """Parse a column label back: `<dataset>: <metric title>[ (<perturbation>)], <mode>`."""
    dataset, rest = label.split(": ", 1)
    title, mode = rest.rsplit(", ", 1)
    for metric in METRICS:
        if title == METRIC_TITLES[metric]:
            perturbation = "*" if metric == "worst_case_accuracy" else "original"
            return {"metric": metric, "dataset": dataset, "perturbation": perturbation, "mode": mode}
        if metric == "stability" and title.startswith(METRIC_TITLES[metric] + " ("):
            return {"metric": metric, "dataset": dataset, "perturbation": title.split("(", 1)[1][:-1], "mode": mode}
    raise AssertionError(f"unknown column {label!r}")


def diff_cell(comparison: dict, cell: dict[str, str]) -> dict:
    matching = [c for c in comparison["cells"] if (c["metric"], c["dataset"], c["perturbation"], c["mode"])
                == (cell["metric"], cell["dataset"], cell["perturbation"], cell["mode"])]
    pooled = [c for c in matching if c["prompt"] == "*"]
    assert pooled or len(matching) == 1, matching
    return (pooled or matching)[0]



def test_incomparable_blocks_are_shown_as_such_and_left_out_of_the_family(tmp_path):
    import numpy as np

    from medgate.report import write_json_atomic
    from report_factory import Design, Population, make_report, simulate_records

    population = Population(Design(items=30, perturbations=("original", "shuffle")), seed=1)
    paths = []
    for name, version, seed in (("base", 1, 1), ("redefined", 2, 2)):
        records = simulate_records(population, 1.0, np.random.default_rng(seed))
        paths.append(tmp_path / f"{name}.json")
        write_json_atomic(make_report(records, run_id=name, versions={"shuffle": version}), paths[-1])
    out = tmp_path / "table.csv"
    result = medgate("table", str(paths[1]), "--reference", str(paths[0]), "--format", "csv", "--out", str(out))
    assert result.returncode == 0, result.stderr
    compared = list(csv.DictReader(io.StringIO(out.read_text())))[1]
    comparable = {name.rsplit(" ", 1)[0]: value for name, value in compared.items() if name.endswith(" comparable")}
    blocked = [column for column, value in comparable.items() if value == "False"]
    assert blocked and all("stability (shuffle)" in c or "worst-case" in c for c in blocked)
    assert all(compared[f"{c} p"] == "" and compared[f"{c} significant"] == "False" for c in blocked)
    assert any(value == "True" for value in comparable.values())  # accuracy on the originals still compared
    markdown = medgate("table", str(paths[1]), "--reference", str(paths[0])).stdout
    assert markdown.count("incomparable") >= len(blocked)


def test_model_names_are_plain_text_in_markdown_and_latex_and_a_report_counts_once(tmp_path):
    import numpy as np

    from medgate.report import write_json_atomic
    from report_factory import Design, Population, make_report, simulate_records

    population = Population(Design(items=20), seed=1)
    hostile = "<img src=x onerror=alert(1)> _www.evil.com\nsecond line"
    document = make_report(simulate_records(population, 1.0, np.random.default_rng(1)), run_id="hostile")
    document["manifest"]["model"]["alias"] = hostile
    path = tmp_path / "hostile.json"
    write_json_atomic(document, path)
    same = tmp_path / "." / "hostile.json"  # the same report, spelt otherwise
    markdown = medgate("table", str(path), str(same)).stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == 2  # header and one model
    assert "<img" not in markdown and "www.evil" not in markdown and "&lt;img" in rows[1]
    latex = medgate("table", str(path), "--format", "latex").stdout
    body = [line for line in latex.splitlines() if "img" in line]
    assert len(body) == 1 and body[0].endswith(r"\\")  # the newline did not end the row early


def test_the_table_warns_of_an_unfinished_reference_and_a_report_with_no_case(tmp_path):
    import numpy as np

    from medgate.report import write_json_atomic
    from report_factory import Design, Population, make_report, simulate_records

    population = Population(Design(items=20), seed=1)
    unfinished = make_report(simulate_records(population, 1.0, np.random.default_rng(1)), run_id="unfinished")
    unfinished["status"], unfinished["missing_cases"] = "interrupted", ["synth-en/00099/original/p0"]
    empty = make_report(simulate_records(population, 1.0, np.random.default_rng(2)), run_id="empty")
    empty["cases"] = []
    paths = {"unfinished": tmp_path / "unfinished.json", "empty": tmp_path / "empty.json"}
    write_json_atomic(unfinished, paths["unfinished"])
    write_json_atomic(empty, paths["empty"])
    result = medgate("table", str(paths["empty"]), "--reference", str(paths["unfinished"]))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert any("is interrupted (1 case(s) without a result)" in line for line in warnings)
    assert any("holds no case" in line for line in warnings)
    assert any("shares no case with the reference" in line for line in warnings)
    assert result.stdout.count("⚠️") == 3
