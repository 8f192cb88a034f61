"""Perturbations of the question stem; the options, labels and gold are left exactly as they were.

- `distractor_sentence` inserts one sentence from the catalog's bank (in the item's language) at a
  sentence boundary, never after the last sentence, so the question itself still ends the stem.
- `typos` edits TYPO_RATE of the eligible words (at least one), one character edit each. Eligible:
  words of at least 4 letters with no digit and not all capitals, so numbers, doses, labels
  ("A", "IV") and acronyms ("COPD", "FEV1") are never touched, and the first letter stays.
- `case_and_space` changes the case of CASE_RATE of the words and widens SPACE_RATE of the gaps
  between words (at least one of each); casefolding and collapsing whitespace recovers the stem.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import replace

from medgate.items import Item
from medgate.perturbations.base import Perturbation, register
from medgate.perturbations.catalog import catalog, texts_for

TYPO_RATE = 0.15
CASE_RATE = 0.2
SPACE_RATE = 0.2

_TYPO_WORD = re.compile(r"(?<!\w)[^\W\d_]{4,}(?!\w)")
_SENTENCE_GAP = re.compile(r"(?<=[.!?])\s+")
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    """Letters beside each letter on a QWERTY keyboard (same row)."""
    table: dict[str, str] = {}
    for row in _QWERTY_ROWS:
        for position, letter in enumerate(row):
            table[letter] = row[max(0, position - 1):position] + row[position + 1:position + 2]
    return table


_NEIGHBOURS = _neighbours()


def _edits(word: str, rng: random.Random) -> list[Callable[[], str]]:
    """Candidate one-character typos of `word`, in a seeded order; the first letter is kept."""
    def swap() -> str:
        i = rng.randrange(1, len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]

    def drop() -> str:
        i = rng.randrange(1, len(word))
        return word[:i] + word[i + 1:]

    def double() -> str:
        i = rng.randrange(1, len(word))
        return word[:i] + word[i] + word[i:]

    def neighbour() -> str:
        i = rng.randrange(1, len(word))
        keys = _NEIGHBOURS.get(word[i].lower(), "")
        if not keys:
            return word
        key = rng.choice(keys)
        return word[:i] + (key.upper() if word[i].isupper() else key) + word[i + 1:]

    candidates = [swap, drop, double, neighbour]
    rng.shuffle(candidates)
    return candidates


def add_typos(text: str, rng: random.Random) -> str:
    words = [m for m in _TYPO_WORD.finditer(text) if not m.group().isupper()]
    if not words:
        return text
    count = max(1, round(TYPO_RATE * len(words)))
    chosen = sorted(rng.sample(range(len(words)), count), reverse=True)  # right to left: spans stay valid
    for index in chosen:
        match = words[index]
        original = match.group()
        edited = next((e for e in (edit() for edit in _edits(original, rng)) if e != original),
                      original[:1] + original[2:])  # dropping a letter always changes the word
        text = text[:match.start()] + edited + text[match.end():]
    return text


def _recase(word: str, rng: random.Random) -> str:
    changes = [str.upper, str.lower, str.capitalize, str.swapcase]
    rng.shuffle(changes)
    for change in changes:
        changed = change(word)
        # Some letters do not round-trip (dotless ı upper-cases to I): keep only recoverable changes.
        if changed != word and changed.casefold() == word.casefold():
            return changed
    return word


def add_case_and_space_noise(text: str, rng: random.Random) -> str:
    parts = re.split(r"(\s+)", text)  # words at even indices, whitespace at odd ones
    cased = [i for i in range(0, len(parts), 2) if any(c.upper() != c.lower() for c in parts[i])]
    gaps = [i for i in range(1, len(parts) - 1, 2) if parts[i - 1] and parts[i + 1]]
    if cased:
        for index in rng.sample(cased, max(1, round(CASE_RATE * len(cased)))):
            parts[index] = _recase(parts[index], rng)
    if gaps:
        for index in rng.sample(gaps, max(1, round(SPACE_RATE * len(gaps)))):
            parts[index] += " " * rng.randint(1, 2)
    return "".join(parts)


def insertion_points(text: str) -> list[int]:
    """Where a sentence may go: the start of the stem or of any later sentence (so never at the end)."""
    points = [0]
    for gap in _SENTENCE_GAP.finditer(text):
        following = text[gap.end():gap.end() + 1]
        # A capital, digit or Spanish opening mark after ". " starts a sentence; "e.g. the" does not.
        if following and (following.isupper() or following.isdigit() or following in "¿¡"):
            points.append(gap.end())
    return points


def insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    point = rng.choice(insertion_points(text))
    return text[:point] + sentence + " " + text[point:]


# -- the perturbations ---------------------------------------------------------------------------------


def distractor_sentence(item: Item, rng: random.Random) -> Item:
    bank = texts_for(catalog().distractor_sentences, item.language, "distractor sentences")
    return replace(item, question=insert_sentence(item.question, rng.choice(bank), rng))


def typos(item: Item, rng: random.Random) -> Item:
    return replace(item, question=add_typos(item.question, rng))


def case_and_space(item: Item, rng: random.Random) -> Item:
    return replace(item, question=add_case_and_space_noise(item.question, rng))


register(Perturbation(
    "distractor_sentence", "An irrelevant but plausible clinical sentence, in the item's language, is "
    "inserted "
    "in the stem at a sentence boundary before the final sentence.", distractor_sentence,
    uses=lambda: {language: list(texts) for language, texts in catalog().distractor_sentences.items()}))
register(Perturbation(
    "typos", f"One-character typos (swap, drop, double, QWERTY neighbour) in {TYPO_RATE:.0%} of the stem's "
    "words of 4+ letters (at least one), sparing digits, labels, acronyms and first letters.", typos))
register(Perturbation(
    "case_and_space", f"Casing changed on {CASE_RATE:.0%} of the stem's words and {SPACE_RATE:.0%} of the "
    "gaps widened by one or two spaces (at least one of each); recoverable by casefolding and collapsing "
    "whitespace.", case_and_space))
