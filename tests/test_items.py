import json
from pathlib import Path

import pytest

from medgate.items import ItemError, item_from_dict, load_jsonl
from medgate.paths import fixtures_dir

GOOD = {
    "id": "q1", "dataset": "demo", "language": "en", "question": "Which vitamin deficiency causes scurvy?",
    "options": [{"label": "A", "text": "Vitamin C"}, {"label": "B", "text": "Vitamin D"},
                {"label": "C", "text": "Vitamin K"}],
    "answer": "A",
}


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_valid_item_round_trips():
    item = item_from_dict(GOOD)
    assert item.gold_text == "Vitamin C"
    assert item_from_dict(item.to_dict()) == item


@pytest.mark.parametrize("change, message", [
    ({"answer": "D"}, "answer: 'D' is not one of the option labels"),
    ({"language": "fr"}, "language"),
    ({"options": GOOD["options"][:2]}, "options"),
    ({"options": GOOD["options"] * 3}, "options"),
    ({"options": [{"label": "A", "text": "x"}, {"label": "A", "text": "y"}, {"label": "B", "text": "z"}]},
     "duplicate labels"),
    ({"id": "has space"}, "id"),
    ({"extra": 1}, "Additional properties"),
    ({"question": " \t\n"}, r"question: ' \\t\\n' does not match"),
    ({"options": [{"label": "A", "text": " "}, *GOOD["options"][1:]]}, r"options/0/text: ' ' does not match"),
])
def test_invalid_items_say_what_is_wrong(change, message):
    with pytest.raises(ItemError, match=message):
        item_from_dict({**GOOD, **change})


def test_missing_field_is_named():
    record = dict(GOOD)
    del record["question"]
    with pytest.raises(ItemError, match="'question' is a required property"):
        item_from_dict(record)


def test_malformed_line_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "items.jsonl", [GOOD, {**GOOD, "id": "q2", "answer": "Z"}])
    with pytest.raises(ItemError) as error:
        load_jsonl(path)
    assert str(error.value).startswith(f"{path}:2: answer: 'Z'")


def test_invalid_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "items.jsonl", [GOOD, "{not json"])
    with pytest.raises(ItemError, match=rf"{path}:2: not valid JSON"):
        load_jsonl(path)


def test_duplicate_ids_are_an_error(tmp_path):
    path = write_lines(tmp_path / "items.jsonl", [GOOD, "", GOOD])
    with pytest.raises(ItemError, match=rf"{path}:3: duplicate id 'q1' \(first on line 1\)"):
        load_jsonl(path)


def test_bundled_samples_are_valid_and_paired():
    folder = fixtures_dir() / "datasets"
    english = load_jsonl(folder / "sample-en.jsonl", "sample-en")
    spanish = load_jsonl(folder / "sample-es.jsonl", "sample-es")
    assert len(english) >= 40 and len(spanish) >= 40
    assert {i.language for i in english} == {"en"} and {i.language for i in spanish} == {"es"}
    twins = {i.pair_id: i for i in spanish}
    for item in english:
        twin = twins[item.pair_id]
        assert (twin.labels, twin.answer) == (item.labels, item.answer)
        assert len(item.options) in (4, 5)
    golds = [i.answer for i in english]
    assert max(golds.count(label) for label in "ABCD") <= len(golds) / 3, "gold labels should be balanced"


def _records():
    """Valid items, each with at most one mutation that may or may not break the schema."""
    from hypothesis import strategies as st

    label = st.one_of(st.from_regex(r"[A-Za-z0-9]{1,4}", fullmatch=True), st.text(max_size=5))
    option = st.fixed_dictionaries({"label": st.from_regex(r"[A-Za-z0-9]{1,4}", fullmatch=True),
                                    "text": st.text(min_size=1, max_size=8)})
    base = st.fixed_dictionaries({
        "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,6}", fullmatch=True),
        "dataset": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True),
        "language": st.sampled_from(["en", "es"]),
        "question": st.text(min_size=1, max_size=10),
        "options": st.lists(option, min_size=3, max_size=6),
        "answer": st.text(max_size=3),
    }, optional={"subject": st.text(max_size=5), "pair_id": st.text(max_size=5), "source": st.text(max_size=5)})
    odd = st.one_of(st.none(), st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))

    @st.composite
    def mutated(draw):
        record = draw(base)
        kind = draw(st.sampled_from(["none", "set", "drop", "extra", "option"]))
        if kind == "set":
            record[draw(st.sampled_from(sorted(record)))] = draw(odd)
        elif kind == "drop":
            record.pop(draw(st.sampled_from(sorted(record))))
        elif kind == "extra":
            record[draw(st.text(min_size=1, max_size=6))] = draw(odd)
        elif kind == "option" and record["options"]:
            index = draw(st.integers(0, len(record["options"]) - 1))
            record["options"][index] = draw(st.one_of(odd, st.fixed_dictionaries(
                {"label": label, "text": st.text(max_size=3)}, optional={"x": odd})))
        return record

    return mutated()


def test_fast_item_check_never_accepts_what_the_schema_rejects():
    from hypothesis import given, settings

    from medgate.items import _plainly_valid
    from medgate.schemas import validator

    schema = validator("item")

    verdicts = []

    @settings(max_examples=800, deadline=None)
    @given(_records())
    def check(record):
        accepted = _plainly_valid(record)
        verdicts.append(accepted)
        if accepted:
            assert schema.is_valid(record)

    check()
    assert _plainly_valid(GOOD) and schema.is_valid(GOOD)
    assert any(verdicts) and not all(verdicts), "the generator must exercise both branches"


# -- item files that used to pass validation and then crash or mislead ------------------------------

GOOD_LINE = json.dumps(GOOD)


@pytest.mark.parametrize("line, message", [
    (GOOD_LINE.replace('"Which', '"\\udc80Which'), r":1: question: holds a lone surrogate"),
    (GOOD_LINE.replace('"Vitamin D"', '"Vitamin \\ud800D"'), r":1: options/1/text: holds a lone surrogate"),
    (GOOD_LINE.replace('"dataset": "demo"', '"dataset": "demo", "source": "x\\udfff"'), r":1: source: holds a lone"),
    (GOOD_LINE.replace('"label": "C"', '"label": "C\\n"'), r":1: options/2/label: 'C\\n' does not match"),
    (GOOD_LINE.replace('"id": "q1"', '"id": "q1\\n"'), r":1: id: 'q1\\n' does not match"),
    (GOOD_LINE.replace('"dataset": "demo"', '"dataset": "demo\\n"'), r":1: dataset: 'demo\\n' does not match"),
    ('{"id": "q1", "question": "unterminated', r":1: not valid JSON \(Invalid control character at column 39\)"),
    ("[" * 100_000 + "]" * 100_000, r":1: not an item \(JSON nested too deeply\)"),
])
def test_bad_lines_are_refused_with_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "items.jsonl", [line])
    with pytest.raises(ItemError, match=rf"^{path}{message}") as refused:
        load_jsonl(path)
    assert "at at" not in str(refused.value)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + GOOD_LINE.replace('"q1"', '"q2"').encode().replace(b"scurvy",
                                                                                                    b"scurv\xff"))
    with pytest.raises(ItemError, match=rf"^{path}:2: not UTF-8 \(invalid start byte at byte \d+ of the line\)"):
        load_jsonl(path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\r\n")
    assert [item.id for item in load_jsonl(path)] == ["q1"]


def test_errors_do_not_echo_huge_values(tmp_path):
    options = [{"label": f"L{i}", "text": "an option text " * 20} for i in range(30)]
    path = write_lines(tmp_path / "items.jsonl", [{**GOOD, "options": options, "answer": "L1"}])
    with pytest.raises(ItemError, match="is too long") as refused:
        load_jsonl(path)
    assert len(str(refused.value)) < len(str(path)) + 200


def test_a_huge_answer_or_id_is_shortened_in_the_message(tmp_path):
    path = write_lines(tmp_path / "answer.jsonl", [{**GOOD, "answer": "Z" * 5000}])
    with pytest.raises(ItemError, match="is not one of the option labels") as refused:
        load_jsonl(path)
    assert len(str(refused.value)) < len(str(path)) + 200
    long_id = "x" * 5000
    path = write_lines(tmp_path / "ids.jsonl", [{**GOOD, "id": long_id}, {**GOOD, "id": long_id, "question": "Q?"}])
    with pytest.raises(ItemError, match="duplicate id") as refused:
        load_jsonl(path)
    assert len(str(refused.value)) < len(str(path)) + 200


def test_duplicate_keys_and_repeated_questions_warn(tmp_path):
    from medgate.items import ItemWarning

    twice = GOOD_LINE.replace('"answer": "A"', '"answer": "B", "answer": "A"')
    other_id = GOOD_LINE.replace('"q1"', '"q2"').replace("Which vitamin", "which  vitamin")
    path = write_lines(tmp_path / "items.jsonl", [twice, other_id])
    with pytest.warns(ItemWarning) as warned:
        items = load_jsonl(path)
    assert [item.answer for item in items] == ["A", "A"]
    messages = [str(w.message) for w in warned]
    assert f"{path}:1: key 'answer' appears twice; the last value is used" in messages
    assert f"{path}:2: item 'q2' asks the same question as item 'q1' (its cases count twice in every metric)" \
        in messages


def test_an_item_file_may_not_pass_as_a_registered_dataset(tmp_path):
    from medgate.datasets import load_dataset

    path = write_lines(tmp_path / "mine.jsonl", [{**GOOD, "dataset": "sample-en"}])
    with pytest.raises(ItemError, match="its items name dataset 'sample-en', which is a registered dataset"):
        load_dataset(str(path), tmp_path)
    bundled = fixtures_dir() / "datasets" / "sample-en.jsonl"
    assert load_dataset(str(bundled), tmp_path).name == "sample-en"  # the registered file itself is fine
