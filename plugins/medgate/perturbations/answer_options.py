"""Perturbations of the answer options: order, labels, and "none of ..." options.

Every step here keeps `extras["origin"]` right: for each presented option, the index of that
option in the published item (None for an inserted option). Steps compose it with the origin of
the item they receive, so a two-step perturbation maps back to the published item too. The
gold label always moves with the gold option's text; for `gold_to_nota` the NOTA text takes the
gold's place (and its origin), so choosing it counts as choosing the gold for stability.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import replace

from medgate.items import Item, Option
from medgate.perturbations.base import Perturbation, PerturbationError, origin_of, register
from medgate.perturbations.catalog import catalog, texts_for

ROTATION_PREFIX = "rotate_"
MAX_ROTATION = 4  # rotate_1 .. rotate_4: every rotation of items of up to five options
# The steps that only move options (labels, texts and the gold option unchanged): the orderings
# whose accuracies the answer-order sensitivity gap compares.
ORDER_ONLY = frozenset({"shuffle_options", "reverse_options", "gold_last",
                        *(f"{ROTATION_PREFIX}{k}" for k in range(1, MAX_ROTATION + 1))})
_ROMAN = ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
          (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))


def roman(number: int) -> str:
    digits = []
    for value, symbol in _ROMAN:
        count, number = divmod(number, value)
        digits.append(symbol * count)
    return "".join(digits)


def letter_labels(count: int) -> list[str]:
    if count > 26:
        raise PerturbationError(f"{count} options cannot be lettered A-Z")
    return list(string.ascii_uppercase[:count])


def numeric_labels(count: int) -> list[str]:
    return [str(number) for number in range(1, count + 1)]


def roman_labels(count: int) -> list[str]:
    return [roman(number) for number in range(1, count + 1)]


LABEL_SCHEMES = {"letters": letter_labels, "numeric": numeric_labels, "roman": roman_labels}


def next_label(labels: Sequence[str]) -> str:
    """The label that would follow `labels` in their own scheme (A-D -> E, 1-4 -> 5, I-IV -> V)."""
    count = len(labels)
    for scheme in (numeric_labels, roman_labels):  # before letters: "I" alone is both
        if list(labels) == scheme(count):
            return scheme(count + 1)[-1]
    if count < 26 and list(labels) == letter_labels(count):
        return letter_labels(count + 1)[-1]
    if count < 26 and list(labels) == [label.lower() for label in letter_labels(count)]:
        return string.ascii_lowercase[count]
    raise PerturbationError(f"cannot tell which label follows {list(labels)} (expected A.., a.., 1.. or I..)")


def reorder(item: Item, order: Sequence[int]) -> Item:
    """Show option `order[j]` of `item` at position j; labels stay in place, the gold follows its text."""
    if sorted(order) != list(range(len(item.options))):
        raise PerturbationError(f"{item.id}: {list(order)} is not a permutation of the options")
    prior = origin_of(item)
    options = [Option(item.options[position].label, item.options[source].text)
               for position, source in enumerate(order)]
    answer = item.options[list(order).index(item.gold_index)].label
    moved = item.with_options(options, answer)
    return _with_origin(moved, tuple(prior[source] for source in order))


def relabel(item: Item, labels: Sequence[str]) -> Item:
    options = [Option(label, option.text) for label, option in zip(labels, item.options, strict=True)]
    return _with_origin(item.with_options(options, labels[item.gold_index]), origin_of(item))


def _with_origin(item: Item, origin: tuple[int | None, ...]) -> Item:
    return replace(item, extras={**item.extras, "origin": origin})


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def unused_phrase(item: Item, phrases: Sequence[str], ignore: int | None = None) -> str:
    """The first phrase that is not already another option's text (compared casefolded)."""
    taken = {_normalised(o.text) for index, o in enumerate(item.options) if index != ignore}
    for phrase in phrases:
        if _normalised(phrase) not in taken:
            return phrase
    raise PerturbationError(f"{item.dataset}/{item.id}: every phrase {list(phrases)} is already an option")


# -- the perturbations ---------------------------------------------------------------------------------


def shuffle_options(item: Item, rng: random.Random) -> Item:
    count = len(item.options)
    if count < 2:
        raise PerturbationError(f"{item.dataset}/{item.id}: cannot move the gold among {count} option(s)")
    order = list(range(count))
    # A permutation that leaves the gold in place would measure nothing about position bias.
    while order[item.gold_index] == item.gold_index:
        rng.shuffle(order)
    return reorder(item, order)


def reverse_options(item: Item, rng: random.Random) -> Item:
    return reorder(item, list(reversed(range(len(item.options)))))


def rotation(steps: int) -> Callable[[Item, random.Random], Item]:
    def rotate(item: Item, rng: random.Random) -> Item:
        count = len(item.options)
        return reorder(item, [(position + steps) % count for position in range(count)])
    return rotate


def gold_last(item: Item, rng: random.Random) -> Item:
    others = [index for index in range(len(item.options)) if index != item.gold_index]
    return reorder(item, [*others, item.gold_index])


def relabel_numeric(item: Item, rng: random.Random) -> Item:
    return relabel(item, numeric_labels(len(item.options)))


def relabel_roman(item: Item, rng: random.Random) -> Item:
    return relabel(item, roman_labels(len(item.options)))


def gold_to_nota(item: Item, rng: random.Random) -> Item:
    phrase = unused_phrase(item, texts_for(catalog().gold_nota, item.language, "gold NOTA phrase"),
                           ignore=item.gold_index)
    options = [Option(o.label, phrase) if index == item.gold_index else o
               for index, o in enumerate(item.options)]
    return _with_origin(item.with_options(options, item.answer), origin_of(item))


def add_nota_distractor(item: Item, rng: random.Random) -> Item:
    phrase = unused_phrase(item, texts_for(catalog().distractor_nota, item.language, "NOTA distractor"))
    options = [*item.options, Option(next_label(item.labels), phrase)]
    return _with_origin(item.with_options(options, item.answer), (*origin_of(item), None))


register(Perturbation(
    "shuffle_options",
    "Options in a random order in which the gold option leaves its position; labels stay in place and "
    "the gold label follows the gold text.", shuffle_options))
register(Perturbation(
    "reverse_options",
    "Options in reverse order; labels stay in place and the gold label follows the gold text.",
    reverse_options))
register(Perturbation(
    "relabel_numeric", "Option labels become 1, 2, 3, ... (order and texts unchanged; answer cue and scoring "
    "use the new labels).", relabel_numeric))
register(Perturbation(
    "relabel_roman", "Option labels become I, II, III, ... (order and texts unchanged; answer cue and "
    "scoring "
    "use the new labels).", relabel_roman))
register(Perturbation(
    "gold_to_nota", "The gold option's text becomes 'None of the other options' (in the item's language), "
    "which is then the only correct option.", gold_to_nota,
    uses=lambda: {language: list(texts) for language, texts in catalog().gold_nota.items()}))
register(Perturbation(
    "add_nota_distractor", "A wrong option 'None of the above' (in the item's language) is appended last, "
    "with the next label.", add_nota_distractor,
    uses=lambda: {language: list(texts) for language, texts in catalog().distractor_nota.items()}))
register(Perturbation(
    "gold_last", "The gold option moves to the last position, the others keep their relative order "
    "(a position-bias probe).", gold_last))
for _steps in range(1, MAX_ROTATION + 1):
    register(Perturbation(
        f"{ROTATION_PREFIX}{_steps}",
        f"Options rotated cyclically by {_steps} (the option at position {_steps + 1} comes first; with N "
        "options, by the remainder of N); labels stay in place and the gold label follows the gold text "
        "(the `circular` set: the gold in every position once).", rotation(_steps)))


def is_rotation(name: str) -> bool:
    return name.startswith(ROTATION_PREFIX) and name[len(ROTATION_PREFIX):].isdigit()


def reorders_only(name: str) -> bool:
    """Whether every step of `name` (`a` or `a+b`) only moves options."""
    return all(step in ORDER_ONLY for step in name.split("+"))
