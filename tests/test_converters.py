"""Converters on small hand-written files in each upstream format (no upstream data needed)."""

import json
from pathlib import Path

import pytest

from medgate.datasets.converters import CONVERTERS
from medgate.datasets.errors import DatasetError, UpstreamFormatError
from medgate.datasets.registry import DatasetSpec, UpstreamFile


def spec_for(name: str, converter: str, *paths: Path, language: str = "en") -> DatasetSpec:
    return DatasetSpec(name=name, languages=(language,), split="test", converter=converter,
                       files=tuple(UpstreamFile(p.name) for p in paths))


def convert(spec: DatasetSpec, *paths: Path):
    return CONVERTERS[spec.converter](spec, list(paths))


def jsonl(path: Path, records: list) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    path.write_text(text, encoding="utf-8")
    return path


MEDQA = {"question": "Which nerve?", "answer": "Median", "answer_idx": "B", "meta_info": "step1",
         "options": {"A": "Ulnar", "B": "Median", "C": "Radial", "D": "Axillary"},
         "metamap_phrases": ["nerve"]}
MEDMCQA = {"id": "45258d3d-b974-44dd-a161-c3fccbdadd88", "question": "Not true for myelinated fibres:",
           "opa": "Slower", "opb": "Nodes of Ranvier", "opc": "Saltatory", "opd": "Anaesthesia",
           "cop": 1, "exp": "Ans-a. Impulses are FASTER in myelinated fibres", "subject_name": "Physiology",
           "topic_name": None, "choice_type": "multi"}


def test_medqa_keeps_the_published_text_and_points_at_the_line(tmp_path):
    records = [MEDQA, "", {**MEDQA, "answer_idx": "A", "answer": "Ulnar"}]
    path = jsonl(tmp_path / "MedQA_USMLE_test.jsonl", records)
    items = convert(spec_for("medqa", "medqa-jsonl", path), path).items
    assert [(i.id, i.answer, i.source) for i in items] == [
        ("0001", "B", "MedQA_USMLE_test.jsonl:1"), ("0003", "A", "MedQA_USMLE_test.jsonl:3")]
    assert (items[0].question, items[0].gold_text, items[0].subject) == ("Which nerve?", "Median", "step1")


def test_medqa_answer_that_contradicts_its_letter_is_an_error(tmp_path):
    path = jsonl(tmp_path / "m.jsonl", [MEDQA, {**MEDQA, "answer": "Radial"}])
    with pytest.raises(UpstreamFormatError, match=rf"{path}:2: answer 'Radial' is not the text of option B"):
        convert(spec_for("medqa", "medqa-jsonl", path), path)


def test_medmcqa_uses_the_one_based_cop_and_never_the_explanation(tmp_path):
    path = jsonl(tmp_path / "MedMCQA_test.json", [MEDMCQA, {**MEDMCQA, "id": "b2", "cop": 4}])
    first, second = convert(spec_for("medmcqa", "medmcqa-jsonl", path), path).items
    assert (first.answer, first.gold_text, second.answer) == ("A", "Slower", "D")
    assert (first.id, first.subject, first.source) == (MEDMCQA["id"], "Physiology", "MedMCQA_test.json:1")
    shown = json.dumps(first.to_dict())
    assert "FASTER" not in shown and "Ans-a" not in shown


@pytest.mark.parametrize("change, message", [
    ({"cop": 0}, r":1: cop 0 is not 1-4"),
    ({"cop": "2"}, r":1: field 'cop' should be int, got str"),
    ({"opc": None}, r":1: field 'opc' should be str"),
    ({"id": "has space"}, r":1: cannot convert this record: id: 'has space' does not match"),
])
def test_medmcqa_bad_records_are_named(tmp_path, change, message):
    path = jsonl(tmp_path / "MedMCQA_test.json", [{**MEDMCQA, **change}])
    with pytest.raises(UpstreamFormatError, match=message):
        convert(spec_for("medmcqa", "medmcqa-jsonl", path), path)


def test_truncated_json_lines_name_file_and_line(tmp_path):
    path = tmp_path / "MedMCQA_test.json"
    path.write_text(json.dumps(MEDMCQA) + "\n" + json.dumps({**MEDMCQA, "id": "b"})[:40], encoding="utf-8")
    with pytest.raises(UpstreamFormatError, match=rf"{path}:2: record is not valid JSON"):
        convert(spec_for("medmcqa", "medmcqa-jsonl", path), path)


def pubmedqa_files(tmp_path: Path, split: dict) -> tuple[Path, Path]:
    records = {
        "111": {"QUESTION": "Does X help?", "CONTEXTS": ["Background text.", "Results text."],
                "LABELS": ["BACKGROUND", "RESULTS"], "final_decision": "yes",
                "LONG_ANSWER": "X clearly helps.", "reasoning_required_pred": "yes",
                "reasoning_free_pred": "yes"},
        "222": {"QUESTION": "Is Y safe?", "CONTEXTS": ["Only context."], "final_decision": "maybe",
                "LONG_ANSWER": "Unclear.", "reasoning_required_pred": "maybe", "reasoning_free_pred": "no"},
    }
    ori = tmp_path / "ori_pqal.json"
    ori.write_text(json.dumps(records))
    truth = tmp_path / "test_ground_truth.json"
    truth.write_text(json.dumps(split))
    return ori, truth


def test_pubmedqa_is_three_options_with_contexts_and_no_long_answer(tmp_path):
    ori, truth = pubmedqa_files(tmp_path, {"222": "maybe", "111": "yes"})
    items = convert(spec_for("pubmedqa", "pubmedqa-json", ori, truth), ori, truth).items
    assert [i.id for i in items] == ["222", "111"]  # the split file's order
    second = items[1]
    assert [(o.label, o.text) for o in second.options] == [("A", "yes"), ("B", "no"), ("C", "maybe")]
    assert (items[0].answer, second.answer) == ("C", "A")
    assert second.question == "Background text.\nResults text.\n\nDoes X help?"
    assert second.source == "ori_pqal.json:111"
    assert "clearly helps" not in json.dumps([i.to_dict() for i in items])


@pytest.mark.parametrize("split, message", [
    ({"333": "yes"}, "PMID 333: not in ori_pqal.json"),
    ({"111": "no"}, "PMID 111: final_decision 'yes' but test_ground_truth.json says 'no'"),
    ({"111": "perhaps"}, "PMID 111: label 'perhaps' is not one of yes, no, maybe"),
])
def test_pubmedqa_split_must_agree_with_the_records(tmp_path, split, message):
    ori, truth = pubmedqa_files(tmp_path, split)
    with pytest.raises(UpstreamFormatError, match=message):
        convert(spec_for("pubmedqa", "pubmedqa-json", ori, truth), ori, truth)


def test_pubmedqa_needs_both_files(tmp_path):
    ori, _ = pubmedqa_files(tmp_path, {})
    with pytest.raises(DatasetError, match="takes 2 file"):
        convert(spec_for("pubmedqa", "pubmedqa-json", ori), ori)


def test_mmlu_reads_quoted_multiline_fields_and_names_subject_from_the_file(tmp_path):
    path = tmp_path / "medical_genetics_test.csv"
    text = '"Which, of these?\nSecond line",1.0/64,b,c,d,A\nPlain question,w,x,"y, z",v,C\n'
    path.write_text(text, encoding="utf-8")
    items = convert(spec_for("mmlu-medical-genetics", "mmlu-csv", path), path).items
    assert [(i.id, i.answer, i.source) for i in items] == [
        ("medical_genetics-001", "A", "medical_genetics_test.csv:1"),
        ("medical_genetics-002", "C", "medical_genetics_test.csv:3")]
    assert items[0].question == "Which, of these?\nSecond line" and items[0].options[0].text == "1.0/64"
    assert items[1].gold_text == "y, z" and items[1].subject == "medical_genetics"


@pytest.mark.parametrize("content, message", [
    ("q,a,b,c,d,A\nq2,a,b,c\n", r"medical_genetics_test.csv:2 \(row 2\): expected 6 columns"),
    ("q,a,b,c,d,E\n", r"medical_genetics_test.csv:1 \(row 1\): answer 'E' is not A, B, C or D"),
    ('q,a,b,c,d,A\n"unterminated,a,b', r"medical_genetics_test.csv:2: row 2 is not valid CSV"),
])
def test_mmlu_bad_rows_are_named(tmp_path, content, message):
    path = tmp_path / "medical_genetics_test.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UpstreamFormatError, match=message):
        convert(spec_for("mmlu-medical-genetics", "mmlu-csv", path), path)


def headqa_document(language: str, texts: tuple[str, str, str]) -> dict:
    def answers(*words):
        return [{"aid": i, "atext": w} for i, w in enumerate(words, start=1)]
    return {"version": "1.0", "language": language, "exams": {"Cuaderno_2016_1_M": {
        "name": "Cuaderno_2016_1_M", "category": "medicine", "year": "2016", "data": [
            {"qid": "1", "qtext": texts[0], "ra": "2", "image": "./data/MIR/img1.png",
             "answers": answers(*"abcd")},
            # answers listed out of aid order: labels still follow the aid
            {"qid": "7", "qtext": texts[1], "ra": "3", "image": "",
             "answers": list(reversed(answers("uno", "dos", "tres", "cuatro")))},
            {"qid": "9", "qtext": texts[2], "ra": "1", "image": "", "answers": answers("w", "x", "y", "z")},
        ]}}}


def write_headqa(tmp_path: Path, name: str, language: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(headqa_document(language, ("Imagen 1", "Pregunta siete", "Pregunta nueve"))))
    return path


def test_headqa_excludes_image_questions_and_pairs_languages(tmp_path):
    es_path = write_headqa(tmp_path, "test_HEAD.json", "es")
    en_path = write_headqa(tmp_path, "test_HEAD_EN.json", "en")
    spanish = convert(spec_for("headqa-es", "headqa-json", es_path, language="es"), es_path)
    english = convert(spec_for("headqa-en", "headqa-json", en_path), en_path)
    assert spanish.excluded == english.excluded == {"refers to an image": 1}
    assert [i.id for i in spanish.items] == ["Cuaderno_2016_1_M-7", "Cuaderno_2016_1_M-9"]
    seven = spanish.items[0]
    assert [o.text for o in seven.options] == ["uno", "dos", "tres", "cuatro"]
    assert (seven.answer, seven.gold_text, seven.subject) == ("C", "tres", "medicine")
    assert seven.source == "test_HEAD.json:Cuaderno_2016_1_M/7"
    assert [i.pair_id for i in spanish.items] == [i.pair_id for i in english.items]
    assert {i.language for i in english.items} == {"en"}


def test_headqa_file_in_the_wrong_language_is_refused(tmp_path):
    path = write_headqa(tmp_path, "test_HEAD_EN.json", "en")
    with pytest.raises(UpstreamFormatError, match="is the 'en' HEAD-QA, dataset 'headqa-es' expects 'es'"):
        convert(spec_for("headqa-es", "headqa-json", path, language="es"), path)


def test_headqa_gold_outside_the_answers_names_exam_and_question(tmp_path):
    document = headqa_document("es", ("a", "b", "c"))
    document["exams"]["Cuaderno_2016_1_M"]["data"][2]["ra"] = "5"
    path = tmp_path / "test_HEAD.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UpstreamFormatError, match=r"exam Cuaderno_2016_1_M qid 9: ra '5' is not among the"):
        convert(spec_for("headqa-es", "headqa-json", path, language="es"), path)


def test_truncated_json_document_says_where_it_breaks_off(tmp_path):
    path = tmp_path / "test_HEAD.json"
    path.write_text(json.dumps(headqa_document("es", ("a", "b", "c")))[:-30])
    expected = rf"{path}: not valid JSON at line 1 column \d+: .*truncated"
    with pytest.raises(UpstreamFormatError, match=expected):
        convert(spec_for("headqa-es", "headqa-json", path, language="es"), path)


def test_binary_file_is_not_mistaken_for_text(tmp_path):
    path = tmp_path / "MedQA_USMLE_test.jsonl"
    path.write_bytes(b"\x1f\x8b\x08\x00 gzip, not json")
    with pytest.raises(UpstreamFormatError, match="not UTF-8 text"):
        convert(spec_for("medqa", "medqa-jsonl", path), path)
