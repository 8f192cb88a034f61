"""Perturbations: invariants over generated items (hypothesis), compositions, sets and the catalog."""

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from medgate.items import Item, Option, item_from_dict, load_jsonl
from medgate.paths import fixtures_dir
from medgate.perturbations import (
    ORIGINAL,
    Composition,
    PerturbationError,
    apply,
    get,
    one_step_names,
    resolve_set,
)
from medgate.perturbations.answer_options import LABEL_SCHEMES, next_label, roman
from medgate.perturbations.base import origin_of
from medgate.perturbations.catalog import catalog, load_catalog
from medgate.perturbations.compose import incompatibility
from medgate.perturbations.stem import _TYPO_WORD, TYPO_RATE, add_case_and_space_noise, add_typos

ROOT = Path(__file__).resolve().parents[1]
STEM_STEPS = {"distractor_sentence", "typos", "case_and_space"}
TWO_STEP = [f"{a}+{b}" for a in one_step_names() for b in one_step_names() if incompatibility(a, b) is None]
EVERY_PERTURBATION = one_step_names() + TWO_STEP


def normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


NOTA_PHRASES = {normalised(p) for texts in (catalog().gold_nota, catalog().distractor_nota)
                for phrases in texts.values() for p in phrases}

# -- generated items ----------------------------------------------------------------------------------

_letters = st.sampled_from("abcdefghijklmnopqrstuvwxyzáéíóúñü")
_word = st.text(_letters, min_size=1, max_size=11)
_token = st.one_of(
    _word, _word.map(str.capitalize), _word.map(str.upper),  # plain, sentence-initial, acronym-like
    st.integers(0, 999).map(str), st.sampled_from(["A", "B", "IV", "FEV1", "0,70", "30-year-old", "(DLCO)"]),
)
_sentence = st.lists(_token, min_size=1, max_size=12).map(lambda words: " ".join(words))
_question = st.lists(_sentence, min_size=1, max_size=4).map(
    lambda sentences: ". ".join(s[:1].upper() + s[1:] for s in sentences) + "?")
_option_text = st.lists(_token, min_size=1, max_size=5).map(" ".join).filter(
    lambda text: normalised(text) not in NOTA_PHRASES)


@st.composite
def items(draw: st.DrawFn) -> Item:
    language = draw(st.sampled_from(["en", "es"]))
    texts = draw(st.lists(_option_text, min_size=3, max_size=6, unique_by=normalised))
    labels = LABEL_SCHEMES["letters"](len(texts))
    return Item(
        id=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,8}", fullmatch=True)),
        dataset=f"synthetic-{language}",
        language=language,
        question=draw(_question),
        options=tuple(Option(label, text) for label, text in zip(labels, texts)),
        answer=draw(st.sampled_from(labels)),
    )


def expected_labels(steps: list[str], count: int) -> list[str]:
    scheme = "numeric" if "relabel_numeric" in steps else "roman" if "relabel_roman" in steps else "letters"
    return LABEL_SCHEMES[scheme](count)


# -- invariants of every perturbation -----------------------------------------------------------------


@pytest.mark.parametrize("name", EVERY_PERTURBATION)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=items(), seed=st.integers(0, 2**32))
def test_every_perturbation_keeps_gold_labels_options_and_origin_consistent(name, item, seed):
    steps = name.split("+")
    shown = apply(name, item, seed)
    count = len(item.options) + ("add_nota_distractor" in steps)
    origin = origin_of(shown)

    assert len(shown.options) == count and len(origin) == count
    assert list(shown.labels) == expected_labels(steps, count)  # unique, in the expected scheme
    assert shown.answer in shown.labels
    assert origin[shown.gold_index] == item.gold_index
    if "gold_to_nota" in steps:
        assert shown.gold_text == catalog().gold_nota[item.language][0]
    else:
        assert shown.gold_text == item.gold_text
    # Every published option appears once; only the NOTA distractor is inserted, and it is last.
    assert sorted(o for o in origin if o is not None) == list(range(len(item.options)))
    for position, source in enumerate(origin):
        text = shown.options[position].text
        if source is None:
            assert position == count - 1 and text == catalog().distractor_nota[item.language][0]
        elif not (position == shown.gold_index and "gold_to_nota" in steps):
            assert text == item.options[source].text
    if not STEM_STEPS & set(steps):
        assert shown.question == item.question
    assert (shown.id, shown.dataset, shown.language) == (item.id, item.dataset, item.language)
    again = apply(name, item, seed)
    assert again == shown and origin_of(again) == origin


@settings(max_examples=60, deadline=None)
@given(item=items(), seed=st.integers(0, 2**32))
def test_option_orders(item, seed):
    n, gold = len(item.options), item.gold_index
    assert origin_of(apply("reverse_options", item, seed)) == tuple(reversed(range(n)))
    assert apply("shuffle_options", item, seed).gold_index != gold  # the gold always moves
    last = apply("gold_last", item, seed)
    assert last.gold_index == n - 1
    assert origin_of(last)[:-1] == tuple(i for i in range(n) if i != gold)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), seed=st.integers(0, 2**32))
def test_case_and_space_noise_is_recovered_by_casefolding_and_collapsing_whitespace(text, seed):
    noisy = add_case_and_space_noise(text, random.Random(seed))
    assert normalised(noisy) == normalised(text)
    if len(text.split()) >= 2:
        assert noisy != text  # at least one gap is widened


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(), _question), seed=st.integers(0, 2**32))
def test_typos_spare_digits_short_words_and_acronyms(text, seed):
    noisy = add_typos(text, random.Random(seed))
    eligible = [m.group() for m in _TYPO_WORD.finditer(text) if not m.group().isupper()]
    assert re.findall(r"\d", noisy) == re.findall(r"\d", text)
    before, after = text.split(), noisy.split()
    assert len(before) == len(after)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    for old, new in changed:
        assert _TYPO_WORD.search(old) and old[0] == new[0]  # only eligible words, first letter kept
    if eligible:
        assert 1 <= len(changed) <= max(1, round(TYPO_RATE * len(eligible)))
    else:
        assert noisy == text


def test_typos_edit_a_fixed_share_of_eligible_words():
    stem = ("A sixty year old patient presents with fever, productive cough and pleuritic chest pain "
            "after returning from holiday; chest radiograph shows lobar consolidation in COPD.")
    eligible = [m.group() for m in _TYPO_WORD.finditer(stem) if not m.group().isupper()]
    noisy = add_typos(stem, random.Random(1))
    changed = sum(a != b for a, b in zip(stem.split(), noisy.split()))
    assert len(eligible) == 20 and changed == round(TYPO_RATE * 20) == 3
    assert "COPD" in noisy and "A " in noisy


@settings(max_examples=60, deadline=None)
@given(item=items(), seed=st.integers(0, 2**32))
def test_distractor_sentence_inserts_one_bank_sentence_before_the_last_sentence(item, seed):
    shown = apply("distractor_sentence", item, seed)
    inserted = [s for s in catalog().distractor_sentences[item.language] if s + " " in shown.question]
    assert len(inserted) == 1
    at = shown.question.index(inserted[0] + " ")
    assert at == 0 or re.search(r"[.!?]\s+$", shown.question[:at])
    assert shown.question.replace(inserted[0] + " ", "", 1) == item.question


# -- the same seed gives the same result in another process -------------------------------------------


def perturbation_digest(records: list[dict], seed: int) -> str:
    """sha256 over every perturbation of every item (as presented, with origins)."""
    digest = hashlib.sha256()
    for record in records:
        item = item_from_dict(record)
        for name in EVERY_PERTURBATION:
            shown = apply(name, item, seed)
            payload = [name, shown.to_dict(), origin_of(shown)]
            digest.update(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()


def digest_in_subprocess(records: list[dict], seed: int, hash_seed: str) -> str:
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_perturbations import "
              "perturbation_digest; print(perturbation_digest(json.load(sys.stdin), int(sys.argv[2])))")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(ROOT / "tests"), str(seed)],
                          input=json.dumps(records), capture_output=True, text=True, env=env, check=True,
                          timeout=120)
    return done.stdout.strip()


# No shrinking: each step would run two more subprocesses.
@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(batch=st.lists(items(), min_size=1, max_size=4), seed=st.integers(0, 2**32))
def test_same_seed_gives_the_same_perturbations_in_another_process(batch, seed):
    records = [{**item.to_dict(), "dataset": item.dataset} for item in batch]
    here = perturbation_digest(records, seed)
    assert digest_in_subprocess(records, seed, "1") == here
    assert digest_in_subprocess(records, seed, "4242") == here
    assert perturbation_digest(records, seed + 1) != here


def test_every_perturbation_applies_to_every_sample_item():
    samples = load_jsonl(fixtures_dir() / "datasets" / "sample-en.jsonl") + \
        load_jsonl(fixtures_dir() / "datasets" / "sample-es.jsonl")
    for name in resolve_set("all")[1:]:
        changed = sum(apply(name, item, 0) != item for item in samples)
        # gold_last leaves the items whose gold is already last as they are
        assert changed == len(samples) or (name == "gold_last" and changed >= len(samples) / 2), name


# -- compositions ---------------------------------------------------------------------------------------

DRUGS = ("Aspirin", "Heparin", "Penicillin", "Insulin")
ITEM = Item("q7", "demo-en", "en", "A 45-year-old man has fever. Which drug is first line?",
            tuple(Option(label, text) for label, text in zip("ABCD", DRUGS)), "C")


def test_two_steps_compose_origins_labels_and_gold():
    nota_reversed = apply("reverse_options+add_nota_distractor", ITEM, 0)
    assert [(o.label, o.text) for o in nota_reversed.options] == [
        ("A", "Insulin"), ("B", "Penicillin"), ("C", "Heparin"), ("D", "Aspirin"), ("E", "None of the above")]
    assert nota_reversed.answer == "B" and origin_of(nota_reversed) == (3, 2, 1, 0, None)

    roman_last = apply("relabel_roman+gold_last", ITEM, 0)
    assert [(o.label, o.text) for o in roman_last.options] == [
        ("I", "Aspirin"), ("II", "Heparin"), ("III", "Insulin"), ("IV", "Penicillin")]
    assert roman_last.answer == "IV" and origin_of(roman_last) == (0, 1, 3, 2)

    nota_shuffled = apply("gold_to_nota+shuffle_options", ITEM, 0)
    assert nota_shuffled.gold_text == "None of the other options"
    assert origin_of(nota_shuffled)[nota_shuffled.gold_index] == 2  # NOTA stands in the gold's slot


def test_a_two_step_perturbation_is_its_two_one_step_perturbations_in_order():
    for name in ("shuffle_options+typos", "relabel_roman+distractor_sentence", "typos+shuffle_options"):
        first, second = name.split("+")
        assert apply(name, ITEM, 3) == apply(second, apply(first, ITEM, 3), 3)
    assert apply("shuffle_options+typos", ITEM, 3).options == apply("shuffle_options", ITEM, 3).options


@pytest.mark.parametrize("name, message", [
    ("typos+typos", "composed with itself"),
    ("relabel_numeric+relabel_roman", "two relabelings"),
    ("gold_to_nota+add_nota_distractor", "contradict"),
    ("add_nota_distractor+gold_to_nota", "contradict"),
    ("shuffle_options+gold_last", "two reorderings"),
    ("gold_last+shuffle_options", "two reorderings"),
    ("add_nota_distractor+shuffle_options", "must stay the last option"),
    ("original+typos", "not a step"),
    ("typos+case_and_space+shuffle_options", "at most 2"),
    ("typoz", "unknown perturbation 'typoz'; known: shuffle_options, reverse_options, *; sets: one-step"),
])
def test_refused_names_say_why(name, message):
    with pytest.raises(PerturbationError) as raised:
        get(name)
    assert re.search(re.escape(message).replace(r"\*", ".*"), str(raised.value))


def test_order_matters_where_declared():
    assert isinstance(get("shuffle_options+add_nota_distractor"), Composition)
    with pytest.raises(PerturbationError):
        get("add_nota_distractor+shuffle_options")


def test_composition_definition_names_its_steps_and_their_data():
    definition = get("relabel_roman+distractor_sentence").definition()
    assert definition["name"] == "relabel_roman+distractor_sentence"
    assert [step["name"] for step in definition["steps"]] == ["relabel_roman", "distractor_sentence"]
    assert "data_sha256" in definition["steps"][1] and "data_sha256" not in definition["steps"][0]


# -- sets and the catalog -------------------------------------------------------------------------------


def test_sets_resolve_with_original_first_and_no_repeats():
    assert resolve_set("none") == resolve_set("") == [ORIGINAL]
    one_step = resolve_set("one-step")
    rotations = resolve_set("circular")[1:]
    assert rotations == ["rotate_1", "rotate_2", "rotate_3"]
    assert one_step[0] == ORIGINAL and len(one_step) == 11
    assert set(one_step[1:]) == set(one_step_names()) - {"rotate_1", "rotate_2", "rotate_3", "rotate_4"}
    everything = resolve_set("all")
    assert len([n for n in everything if "+" in n]) >= 3 and len(everything) == len(set(everything))
    mixed = resolve_set("typos, shuffle_options+typos,typos,original")
    assert mixed == [ORIGINAL, "typos", "shuffle_options+typos"]
    assert resolve_set("two-step,one-step")[1:6] == resolve_set("two-step")[1:]


@contextmanager
def edited_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> Iterator[None]:
    """The perturbation catalog read from a copy of perturbations.toml with `old` replaced by `new`."""
    folder = tmp_path / "fixtures"
    folder.mkdir()
    text = (fixtures_dir() / "perturbations.toml").read_text()
    assert old in text
    (folder / "perturbations.toml").write_text(text.replace(old, new))
    monkeypatch.setenv("MEDGATE_FIXTURES_DIR", str(folder))
    catalog.cache_clear()
    try:
        yield
    finally:
        catalog.cache_clear()


def test_a_bad_name_in_a_set_names_the_set_and_file(tmp_path, monkeypatch):
    with edited_catalog(tmp_path, monkeypatch, "one-step = [", 'one-step = ["typos+typos",'):
        expected = r"composed with itself \(in set 'one-step' of .*perturbations.toml"
        with pytest.raises(PerturbationError, match=expected):
            resolve_set("one-step")


def test_changing_a_text_bank_changes_the_definition(tmp_path, monkeypatch):
    before = {name: get(name).definition() for name in one_step_names()}
    with edited_catalog(tmp_path, monkeypatch, "ten minutes early", "five minutes early"):
        after = {name: get(name).definition() for name in one_step_names()}
    assert [name for name in before if before[name] != after[name]] == ["distractor_sentence"]


def test_nested_sets_expand_and_cycles_are_refused(tmp_path):
    path = tmp_path / "p.toml"
    banks = (fixtures_dir() / "perturbations.toml").read_text().split("[nota.gold]")[1]
    path.write_text('[sets]\na = ["typos", "b"]\nb = ["gold_last", "typos"]\nc = ["c"]\n[nota.gold]' + banks)
    loaded = load_catalog(path)
    assert loaded.expand("a") == ["typos", "gold_last"]
    with pytest.raises(PerturbationError, match="includes itself"):
        loaded.expand("c")
    path.write_text('[sets]\na = ["typos"]\n')
    with pytest.raises(PerturbationError, match=r"missing table \[nota.gold\]"):
        load_catalog(path)


def test_nota_phrases_avoid_texts_the_item_already_has():
    has_nota = replace(ITEM, options=(*ITEM.options[:3], Option("D", "None of the above")))
    assert apply("add_nota_distractor", has_nota, 0).options[-1].text == "None of these"
    has_other = replace(ITEM, options=(*ITEM.options[:3], Option("D", "none of the other options")))
    assert apply("gold_to_nota", has_other, 0).gold_text == "None of the other answers"


def test_labels_extend_in_their_own_scheme_and_odd_labels_are_refused():
    assert next_label(["A", "B", "C"]) == "D"
    assert next_label(["1", "2", "3", "4"]) == "5"
    assert next_label(["I", "II", "III"]) == "IV"
    assert [roman(n) for n in (4, 9, 14, 40)] == ["IV", "IX", "XIV", "XL"]
    odd = replace(ITEM, options=tuple(Option(label, o.text) for label, o in zip("WXYZ", ITEM.options)),
                  answer="Y")
    with pytest.raises(PerturbationError, match="cannot tell which label follows"):
        apply("add_nota_distractor", odd, 0)
