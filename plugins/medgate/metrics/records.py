"""The case record every metric, gate and comparison reads, and the English/Spanish twin pairing.

A case record is what the predictor returns for one case and what a report's `cases` hold. It is a
TypedDict, not a class: reports of 50,000 cases are read and merged as plain dicts, and a TypedDict
costs nothing at run time. The keys are those the predictor writes (see fixtures/schemas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict


class PresentedOption(TypedDict):
    label: str
    text: str


class CaseRecord(TypedDict):
    case_id: str
    item_id: str
    dataset: str
    language: str
    perturbation: str
    prompt: str
    mode: str
    correct: bool
    predicted_origin: int | None  # the chosen option's index in the published item (None: none or inserted)
    subject: NotRequired[str | None]
    pair_id: NotRequired[str | None]
    question: NotRequired[str]
    options_presented: NotRequired[list[PresentedOption]]
    gold_label: NotRequired[str]
    item_hash: NotRequired[str]
    prompt_hash: NotRequired[str]
    prompt_text: NotRequired[str]
    continuations: NotRequired[dict[str, str]]
    predicted_label: NotRequired[str | None]
    scores: NotRequired[dict[str, float]]  # loglik: each presented label's log-likelihood
    truncated_tokens: NotRequired[int]
    non_finite: NotRequired[bool]
    parity_max_abs_diff: NotRequired[float]
    raw_output: NotRequired[str]
    schema_valid: NotRequired[bool]
    strict_answer: NotRequired[str | None]
    lenient_answer: NotRequired[str | None]
    lenient_method: NotRequired[str | None]
    lenient_correct: NotRequired[bool]
    stop_reason: NotRequired[str]
    generated_tokens: NotRequired[int]
    cached: NotRequired[bool]


@dataclass(frozen=True, order=True)
class TwinPair:
    """Two datasets that hold the same items in English and Spanish (sample-en and sample-es).

    A cell over twins names its dataset `<english>|<spanish>` in reports; `name` and `parse` are the
    only places that spelling is made and read.
    """

    english: str
    spanish: str

    SEPARATOR = "|"

    @property
    def name(self) -> str:
        return f"{self.english}{self.SEPARATOR}{self.spanish}"

    @property
    def datasets(self) -> tuple[str, str]:
        return self.english, self.spanish

    @classmethod
    def parse(cls, name: str) -> TwinPair | None:
        """The pair a cell's dataset names, or None for a single dataset."""
        english, separator, spanish = name.partition(cls.SEPARATOR)
        return cls(english, spanish) if separator else None

    @classmethod
    def of(cls, records: tuple[CaseRecord, CaseRecord]) -> TwinPair:
        english, spanish = records
        return cls(english["dataset"], spanish["dataset"])

    @classmethod
    def among(cls, datasets: set[str] | frozenset[str]) -> list[TwinPair]:
        """Pairs of datasets that differ only by their language suffix (sample-en and sample-es)."""
        return sorted(cls(name, name[:-3] + "-es") for name in datasets
                      if name.endswith("-en") and name[:-3] + "-es" in datasets)


def datasets_of(cell_dataset: str) -> set[str]:
    """The dataset(s) a cell reads: both twins for a pair."""
    pair = TwinPair.parse(cell_dataset)
    return set(pair.datasets) if pair else {cell_dataset}
