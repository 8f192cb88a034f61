"""Every registered dataset converted in full from ../shared/datasets/raw, checked against its records.

Expected counts are the ones documented in each upstream folder's SOURCE.md. Each test gets an
empty item cache so that these tests exercise the converters, not a cache left by another run.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest

from medgate.datasets import DatasetError, UpstreamFormatError, load_dataset, registry

# name -> (items, {reason: excluded}); from the SOURCE.md files.
EXPECTED = {
    "medqa": (1273, {}),
    "medmcqa": (4183, {}),
    "pubmedqa": (500, {}),
    "mmlu-medical": (1089, {}),
    "mmlu-anatomy": (135, {}),
    "mmlu-clinical-knowledge": (265, {}),
    "mmlu-college-biology": (144, {}),
    "mmlu-college-medicine": (173, {}),
    "mmlu-medical-genetics": (100, {}),
    "mmlu-professional-medicine": (272, {}),
    "headqa-es": (2742 - 67, {"refers to an image": 67}),
    "headqa-en": (2742 - 67, {"refers to an image": 67}),
    "headqa-dev-es": (1366 - 30, {"refers to an image": 30}),
    "headqa-dev-en": (1366 - 30, {"refers to an image": 30}),
    "sample-en": (48, {}),
    "sample-es": (48, {}),
}


@pytest.fixture(autouse=True)
def empty_item_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def raw(shared_raw: Path) -> Path:
    return shared_raw


def test_every_registered_dataset_has_an_expected_count():
    assert set(EXPECTED) == set(registry())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_converts_in_full(raw, name):
    dataset = load_dataset(name, raw)
    count, excluded = EXPECTED[name]
    assert len(dataset.items) == count
    assert dataset.provenance["items_available"] == count and dataset.provenance["items_excluded"] == excluded
    assert len({item.id for item in dataset.items}) == count
    assert all(item.source for item in dataset.items)
    assert {item.dataset for item in dataset.items} == {name}
    assert {item.language for item in dataset.items} == set(registry()[name].languages)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_medqa_gold_is_each_lines_answer_idx(raw):
    records = lines(raw / "medqa_usmle/MedQA_USMLE_test.jsonl")
    for item in load_dataset("medqa", raw).items:
        record = records[int(item.id) - 1]
        assert item.source == f"MedQA_USMLE_test.jsonl:{int(item.id)}"
        expected = (record["question"], record["answer_idx"], record["answer"])
        assert (item.question, item.answer, item.gold_text) == expected


def test_medmcqa_gold_is_cop_and_explanations_stay_out(raw):
    records = {r["id"]: r for r in lines(raw / "medmcqa/MedMCQA_test.json")}
    items = load_dataset("medmcqa", raw).items
    for item in items:
        record = records[item.id]
        assert item.gold_text == record["opa opb opc opd".split()[record["cop"] - 1]]
        assert item.subject == record["subject_name"]
    explanations = [r["exp"] for r in records.values() if r["exp"] and len(r["exp"]) > 80]
    shown = {i.question for i in items} | {o.text for i in items for o in i.options}
    assert explanations and not any(e in shown for e in explanations)


def test_pubmedqa_is_the_official_test_split_without_long_answers(raw):
    truth = json.loads((raw / "pubmedqa/data/test_ground_truth.json").read_text())
    records = json.loads((raw / "pubmedqa/data/ori_pqal.json").read_text())
    items = load_dataset("pubmedqa", raw).items
    assert [i.id for i in items] == list(truth)
    for item in items:
        record = records[item.id]
        assert item.gold_text == truth[item.id] and [o.text for o in item.options] == ["yes", "no", "maybe"]
        assert item.question.startswith(record["CONTEXTS"][0]) and item.question.endswith(record["QUESTION"])
        assert record["LONG_ANSWER"] not in item.question


def test_mmlu_gold_is_the_last_column(raw):
    rows: dict[str, list[list[str]]] = {}
    for path in (raw / "mmlu_medical/test").glob("*_test.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            rows[path.name.removesuffix("_test.csv")] = list(csv.reader(handle))
    for item in load_dataset("mmlu-medical", raw).items:
        question, *options, answer = rows[item.subject][int(item.id.rsplit("-", 1)[1]) - 1]
        assert (item.question, [o.text for o in item.options], item.answer) == (question, options, answer)


def headqa_records(path: Path) -> dict[str, dict]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return {f"{exam}-{q['qid']}": {**q, "category": e["category"]}
            for exam, e in document["exams"].items() for q in e["data"]}


@pytest.mark.parametrize("name, path", [("headqa-es", "head_qa/HEAD/test_HEAD.json"),
                                        ("headqa-en", "head_qa/HEAD_EN/test_HEAD_EN.json")])
def test_headqa_gold_is_ra_and_image_questions_are_out(raw, name, path):
    records = headqa_records(raw / path)
    items = load_dataset(name, raw).items
    for item in items:
        record = records[item.id]
        gold = next(a["atext"] for a in record["answers"] if str(a["aid"]) == record["ra"])
        assert (item.question, item.gold_text, item.subject) == (record["qtext"], gold, record["category"])
    kept = {i.id for i in items}
    assert {key for key, r in records.items() if r["image"]} == set(records) - kept


def test_headqa_twins_share_pair_ids_and_gold(raw):
    spanish = {i.pair_id: i for i in load_dataset("headqa-es", raw).items}
    english = {i.pair_id: i for i in load_dataset("headqa-en", raw).items}
    assert set(spanish) == set(english)
    for pair, item in spanish.items():
        assert (item.answer, item.subject) == (english[pair].answer, english[pair].subject)
    assert any(spanish[p].question != english[p].question for p in spanish)


def test_subset_selects_the_mir_exam(raw):
    records = headqa_records(raw / "head_qa/HEAD/test_HEAD.json").values()
    mir = load_dataset("headqa-es", raw, subsets=[("subject", "medicine")])
    assert {i.subject for i in mir.items} == {"medicine"}
    assert len(mir.items) == sum(1 for r in records if r["category"] == "medicine" and not r["image"])
    assert mir.provenance["subsets"] == ["subject=medicine"] and mir.provenance["items_available"] == 2675


def test_unknown_subset_value_lists_the_existing_ones(raw):
    expected = ("no items left after --subset subject=mir; its subject values are: "
                "biology, chemistry, medicine, nursery, pharmacology, psychology")
    with pytest.raises(DatasetError, match=expected):
        load_dataset("headqa-es", raw, subsets=[("subject", "mir")])


def test_provenance_records_files_checksums_and_sampling(raw):
    provenance = load_dataset("pubmedqa", raw, limit=20, seed=3).provenance
    assert [Path(f["path"]).name for f in provenance["files"]] == ["ori_pqal.json", "test_ground_truth.json"]
    assert all(f["registry_sha256_match"] for f in provenance["files"])
    counts = (provenance["items_available"], provenance["items_selected"])
    assert provenance["split"] == "test" and counts == (500, 20)
    assert (provenance["limit"], provenance["seed"], provenance["stratified_by"]) == (20, 3, "subject")
    assert provenance["license"].startswith("MIT") and "PubMedQA" in provenance["citation"]


def copy_of(raw: Path, tmp_path: Path, relative: str) -> Path:
    target = tmp_path / "data" / relative
    target.parent.mkdir(parents=True)
    shutil.copyfile(raw / relative, target)
    return target


def test_missing_file_names_dataset_path_and_fetch_command(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("headqa-en", tmp_path / "empty")
    message = str(error.value)
    assert message.startswith("dataset 'headqa-en': upstream file(s) not found: ")
    assert str(tmp_path / "empty" / "head_qa/HEAD_EN/test_HEAD_EN.json") in message
    assert f"`medgate fetch headqa-en --data-dir {tmp_path / 'empty'}`" in message


def test_truncated_upstream_file_names_file_record_and_checksum(raw, tmp_path):
    path = copy_of(raw, tmp_path, "medqa_usmle/MedQA_USMLE_test.jsonl")
    text = path.read_text(encoding="utf-8")
    cut = text.index("\n", len(text) // 2) + 200
    path.write_text(text[:cut], encoding="utf-8")
    with pytest.raises(UpstreamFormatError) as error:
        load_dataset("medqa", tmp_path / "data")
    assert str(error.value).startswith(f"{path}:{text[:cut].count(chr(10)) + 1}: record is not valid JSON")
    assert "differs from the registry: re-fetch with `medgate fetch medqa`" in str(error.value)


def test_modified_but_readable_file_loads_with_a_warning_and_is_recorded(raw, tmp_path):
    path = copy_of(raw, tmp_path, "mmlu_medical/test/anatomy_test.csv")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("facial nerve", "FACIAL NERVE", 1), encoding="utf-8")
    with pytest.warns(UserWarning, match="is not the registered file"):
        dataset = load_dataset("mmlu-anatomy", tmp_path / "data")
    assert dataset.provenance["files"][0]["registry_sha256_match"] is False
    assert "FACIAL NERVE" in dataset.items[0].question
