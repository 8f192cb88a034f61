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
