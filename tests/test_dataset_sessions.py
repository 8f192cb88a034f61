"""Whole medgate sessions on upstream datasets (pytester subprocesses, serial and under xdist)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from session_reports import report_of

pytestmark = pytest.mark.slow




def medqa_gold(raw: Path, item_id: str) -> tuple[str, str]:
    lines = (raw / "medqa_usmle/MedQA_USMLE_test.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[int(item_id) - 1])
    return record["answer_idx"], record["answer"]


def headqa_gold(document: dict, item_id: str) -> str:
    exam, qid = item_id.rsplit("-", 1)
    question = next(q for q in document["exams"][exam]["data"] if q["qid"] == qid)
    return next(a["atext"] for a in question["answers"] if str(a["aid"]) == question["ra"])


def test_acceptance_run_medqa_and_headqa_es_fifty_each(suite, tiny_checkpoint, shared_raw):
    result = suite.runpytest_subprocess("-n", "2", "--model", "tiny", "--dataset", "medqa", "--dataset",
                                        "headqa-es", "--limit", "50", f"--data-dir={shared_raw}",
                                        "--report", "report.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=100)
    document = report_of(suite, "report.json")
    cases = document["cases"]
    assert len(cases) == 100
    assert Counter(c["dataset"] for c in cases) == {"medqa": 50, "headqa-es": 50}
    headqa = json.loads((shared_raw / "head_qa/HEAD/test_HEAD.json").read_text(encoding="utf-8"))
    for case in cases:
        gold_text = next(o["text"] for o in case["options_presented"] if o["label"] == case["gold_label"])
        if case["dataset"] == "medqa":
            assert (case["gold_label"], gold_text) == medqa_gold(shared_raw, case["item_id"])
        else:
            assert gold_text == headqa_gold(headqa, case["item_id"])
    manifest = {d["name"]: d for d in document["manifest"]["datasets"]}
    assert manifest["headqa-es"]["items_excluded"] == {"refers to an image": 67}
    assert manifest["headqa-es"]["items_available"] == 2675 and manifest["medqa"]["items_available"] == 1273
    for name in ("medqa", "headqa-es"):
        record = manifest[name]
        assert (record["limit"], record["seed"], record["items_selected"]) == (50, 0, 50)
        assert all(f["registry_sha256_match"] for f in manifest[name]["files"])


def case_ids(document: dict) -> list[str]:
    return [c["case_id"] for c in document["cases"]]


def test_same_limit_and_seed_select_the_same_items_serially_and_under_four_workers(suite, tiny_checkpoint,
                                                                                     shared_raw):
    def run(seed: str, report: str, *extra: str) -> None:
        suite.runpytest_subprocess("--dataset", "mmlu-medical", "--dataset", "headqa-en", "--dataset",
                                   "pubmedqa", "--limit", "12", "--seed", seed, f"--data-dir={shared_raw}",
                                   "--report", report, "-p", "no:cacheprovider", *extra)

    run("7", "serial.json")
    run("7", "parallel.json", "-n", "4")
    run("8", "other-seed.json")
    serial, parallel = report_of(suite, "serial.json"), report_of(suite, "parallel.json")
    assert len(serial["cases"]) == 36 and case_ids(serial) == case_ids(parallel)
    assert {c["item_id"].rsplit("-", 1)[0] for c in serial["cases"] if c["dataset"] == "mmlu-medical"} == {
        "anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
        "professional_medicine"}
    assert case_ids(report_of(suite, "other-seed.json")) != case_ids(serial)


def test_missing_data_is_a_usage_error_with_the_fetch_command(suite, tmp_path):
    result = suite.runpytest_subprocess("--dataset", "pubmedqa", f"--data-dir={tmp_path / 'nothing'}",
                                        "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    missing = tmp_path / "nothing" / "pubmedqa/data/ori_pqal.json"
    result.stderr.fnmatch_lines([f"*dataset 'pubmedqa': upstream file(s) not found: {missing}*"
                                 f"`medgate fetch pubmedqa --data-dir {tmp_path}/nothing`*"])


def test_subset_and_several_datasets_on_the_command_line(suite, tiny_checkpoint, shared_raw):
    # A path given as a separate argument (`--data-dir /x`) takes part in pytest's choice of rootdir,
    # which changes every node id's prefix: options that take paths get theirs with `=`.
    result = suite.runpytest_subprocess("--collect-only", "-q", "--dataset=headqa-es", "--dataset=headqa-en",
                                        "--subset=subject=medicine", "--limit=5", f"--data-dir={shared_raw}",
                                        "-p", "no:cacheprovider")
    assert result.ret == 0
    case_ids = [line[line.index("test_mcqa[") + len("test_mcqa["):-1] for line in result.stdout.lines
                if "test_mcqa[" in line]
    assert len(case_ids) == 10
    spanish = sorted(case_id.split("/")[1] for case_id in case_ids if case_id.startswith("headqa-es/"))
    english = sorted(case_id.split("/")[1] for case_id in case_ids if case_id.startswith("headqa-en/"))
    assert spanish == english and all("_M-" in item for item in spanish)  # the MIR exams are the M booklets
