from medgate.items import item_from_dict
from medgate.scoring import choose, json_object_closed, parse_json_answer

ITEM = item_from_dict({
    "id": "q1", "dataset": "demo", "language": "en", "question": "?",
    "options": [{"label": "A", "text": "Atropine"}, {"label": "B", "text": "Naloxone"},
                {"label": "C", "text": "Flumazenil"}, {"label": "D", "text": "Glucagon"}],
    "answer": "B",
})


def test_choose_takes_the_highest_and_the_first_on_ties():
    assert choose([-3.0, -0.5, -2.0]) == 1
    assert choose([-1.0, -1.0, -2.0]) == 0


def test_strict_answer_requires_exactly_one_valid_object():
    answer = parse_json_answer(' {"answer": "B"}\n', ITEM)
    assert (answer.schema_valid, answer.strict_answer, answer.lenient_method) == (True, "B", "strict")


def test_label_outside_the_presented_ones_is_not_valid():
    answer = parse_json_answer('{"answer": "E"}', ITEM)
    assert not answer.schema_valid and answer.strict_answer is None and answer.lenient_answer is None


def test_extra_keys_or_text_break_strict_compliance_but_not_lenient():
    extra_key = parse_json_answer('{"answer": "C", "why": "benzodiazepine"}', ITEM)
    assert not extra_key.schema_valid and (extra_key.lenient_answer, extra_key.lenient_method) == ("C", "json_object")
    chatter = parse_json_answer('Sure! {"answer": "b"} hope this helps', ITEM)
    assert not chatter.schema_valid and chatter.lenient_answer == "B"


def test_lenient_cascade_order():
    assert parse_json_answer('answer: "D"', ITEM).lenient_method == "answer_key"
    assert parse_json_answer("(A) because it is muscarinic", ITEM).lenient_method == "leading_label"
    assert parse_json_answer("I would give naloxone.", ITEM).lenient_answer == "B"
    assert parse_json_answer("naloxone or flumazenil", ITEM).lenient_answer is None
    assert parse_json_answer("", ITEM).lenient_answer is None


def test_stop_rule_waits_for_the_object_to_close_even_with_braces_in_strings():
    assert not json_object_closed(' {"answer": "}')
    assert json_object_closed(' {"answer": "}"}')
    assert not json_object_closed(" B")
    assert json_object_closed(" B\n")


YES_NO = item_from_dict({"id": "y", "dataset": "d", "language": "en", "question": "Does it?", "answer": "B",
                         "options": [{"label": "A", "text": "yes"}, {"label": "B", "text": "no"},
                                     {"label": "C", "text": "maybe"}]})
ROMAN = item_from_dict({"id": "r", "dataset": "d", "language": "en", "question": "Which?", "answer": "II",
                        "options": [{"label": "I", "text": "Warfarin"}, {"label": "II", "text": "Heparin"},
                                    {"label": "III", "text": "Aspirin"}]})
CASED = item_from_dict({"id": "c", "dataset": "d", "language": "en", "question": "Which?", "answer": "a",
                        "options": [{"label": "A", "text": "x"}, {"label": "a", "text": "y"},
                                    {"label": "B", "text": "z"}]})


def test_lenient_parsing_reads_no_article_pronoun_or_word_part_as_an_answer():
    assert parse_json_answer("A patient like this needs warfarin", YES_NO).lenient_answer is None
    assert parse_json_answer("I think the answer is III.", ROMAN).lenient_answer is None
    assert parse_json_answer("Diagnosis uncertain", YES_NO).lenient_answer is None  # "no" inside a word
    assert parse_json_answer("I do not know.", YES_NO).lenient_answer is None
    assert parse_json_answer("A. yes", YES_NO).lenient_answer == "A"
    assert parse_json_answer("III) Aspirin", ROMAN).lenient_answer == "III"
    assert parse_json_answer("The answer is no.", YES_NO).lenient_answer == "B"


def test_a_label_differing_only_in_case_is_matched_exactly():
    assert parse_json_answer('{"answer": "a", "why": 1}', CASED).lenient_answer == "a"
    assert parse_json_answer('{"answer": "A", "why": 1}', CASED).lenient_answer == "A"
    assert parse_json_answer('{"answer": "b", "why": 1}', CASED).lenient_answer == "B"  # one B: case aside
