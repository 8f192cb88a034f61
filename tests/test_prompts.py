from medgate.items import item_from_dict
from medgate.prompts import (
    continuation_text,
    label_list,
    prompt_library,
    render,
    select_prompts,
    template_for,
)

ITEM = item_from_dict({
    "id": "q1", "dataset": "demo", "language": "en", "question": "Stem with {braces}?",
    "options": [{"label": "A", "text": "one"}, {"label": "B", "text": "two {x}"}, {"label": "C", "text": "three"}],
    "answer": "B",
})


def test_default_prompt_is_lm_eval_medqa_format():
    prompt = render(template_for("p0", "en"), ITEM)
    assert prompt.system == ""
    assert prompt.user == "Question: Stem with {braces}?\nA. one\nB. two {x}\nC. three\nAnswer:"
    assert continuation_text(template_for("p0", "en"), "B") == " B"


def test_json_prompt_keeps_literal_braces_and_lists_labels():
    text = render(template_for("j0", "en"), ITEM).user
    assert '{"answer": "<label>"}' in text and "one of A, B or C" in text
    assert continuation_text(template_for("j0", "en"), "C") == ' {"answer": "C"}'


def test_every_prompt_has_both_languages_and_a_stable_hash():
    library = prompt_library()
    assert {name for name in library if name.startswith("p")} >= {"p0", "p1", "p2"}
    assert {name for name in library if name.startswith("j")} >= {"j0", "j1", "j2"}
    hashes = set()
    for by_language in library.values():
        assert set(by_language) == {"en", "es"}
        for template in by_language.values():
            assert template.content_hash == template.content_hash
            hashes.add(template.content_hash)
    assert len(hashes) == sum(len(v) for v in library.values())


def test_prompt_selection_follows_modes():
    assert select_prompts("default", ("loglik",)) == ["p0"]
    assert select_prompts("all", ("generate",)) == ["j0", "j1", "j2"]
    assert select_prompts("p1,j1", ("loglik",)) == ["p1"]


def test_spanish_label_list():
    assert label_list(("A", "B", "C", "D"), "es") == "A, B, C o D"
