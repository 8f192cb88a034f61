"""The "at a glance" numbers of a report, computed from its cases for display only (gates use metrics.py).

- position bias: per dataset and mode, the share of answers at each option position beside the share of
  gold answers there (a model answering "A" to everything shows one tall bar against a flat gold profile);
- accuracy per subject and per prompt (prompt sensitivity), with 95% Wilson intervals;
- compliance failures (generate mode) grouped by what the reply was instead of the JSON object asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medgate.stats import wilson_interval

NO_ANSWER = "none"
POSITION_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FAILURE_KINDS = {
    "prose": "prose: no JSON and no leading label",
    "label only": "a bare label (perhaps with its option's text) instead of a JSON object",
    "wrong key": "a JSON object without exactly the key `answer`",
    "invalid answer": "a JSON object whose answer is not one of the labels",
    "invalid JSON": "JSON that does not parse (often cut off by the token limit)",
    "empty": "nothing generated",
    "not recorded": "the report has no raw output for the case",
}
_LABEL_FIRST = re.compile(r"^\s*[(\[]?\s*[A-Za-z0-9]{1,4}\s*(?:[)\].:]|$)")
Case = Mapping[str, Any]


def chosen_label(case: Case) -> str | None:
    """What the model picked: in generate mode the lenient parse, so a non-compliant "A. ..." still counts as A."""
    if case.get("mode") == "generate":
        return case.get("lenient_answer")
    return case.get("predicted_label")


def _position(case: Case, label: str | None) -> int | None:
    if label is None:
        return None
    for index, option in enumerate(case.get("options_presented") or []):
        if option.get("label") == label:
            return index
    return None


@dataclass(frozen=True)
class PositionProfile:
    dataset: str
    mode: str
    cases: int
    chosen: list[float]  # share of cases whose answer sits at each position
    gold: list[float]  # share of cases whose gold answer sits there
    unanswered: float  # share with no answer at any position

    @property
    def title(self) -> str:
        return f"{self.dataset} ({self.mode})"


def position_profiles(cases: Iterable[Case]) -> list[PositionProfile]:
    counts: dict[tuple[str, str], tuple[Counter[int | None], Counter[int | None]]] = defaultdict(
        lambda: (Counter(), Counter()))
    for case in cases:
        chosen, gold = counts[(case["dataset"], case["mode"])]
        chosen[_position(case, chosen_label(case))] += 1
        gold[_position(case, case.get("gold_label"))] += 1
    profiles = []
    for (dataset, mode), (chosen, gold) in sorted(counts.items()):
        total = sum(chosen.values())
        width = 1 + max((p for p in (*chosen, *gold) if p is not None), default=0)
        profiles.append(PositionProfile(dataset, mode, total, [chosen[i] / total for i in range(width)],
                                        [gold[i] / total for i in range(width)], chosen[None] / total))
    return profiles


@dataclass(frozen=True)
class Share:
    label: str
    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)


def accuracy_by(cases: Iterable[Case], *keys: str) -> list[Share]:
    """Accuracy per value of `keys` (e.g. dataset and subject), in the order of the keys."""
    tally: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for case in cases:
        if case.get("non_finite"):
            continue
        key = tuple(str(case.get(k) or "-") for k in keys)
        tally[key][0] += int(bool(case.get("correct")))
        tally[key][1] += 1
    return [Share(" · ".join(key), right, n) for key, (right, n) in sorted(tally.items())]


def failure_kind(case: Case) -> str:
    """What a non-compliant reply was: see FAILURE_KINDS."""
    raw = case.get("raw_output")
    if raw is None:
        return "not recorded"
    text = raw.strip()
    if not text:
        return "empty"
    start = text.find("{")
    if start < 0:
        return "label only" if _LABEL_FIRST.match(text) else "prose"
    try:
        parsed, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return "invalid JSON"
    if not isinstance(parsed, dict) or set(parsed) != {"answer"}:
        return "wrong key"
    return "invalid answer"


@dataclass(frozen=True)
class FailureGroup:
    kind: str
    count: int
    share: float  # of the generate-mode cases
    example: str  # a case id
    example_output: str


def compliance_failures(cases: Sequence[Case]) -> tuple[int, list[FailureGroup]]:
    """The number of generate-mode cases, and their non-compliant replies grouped by kind (largest first)."""
    generated = [c for c in cases if c.get("mode") == "generate"]
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in generated:
        if not case.get("schema_valid"):
            groups[failure_kind(case)].append(case)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return len(generated), [FailureGroup(kind, len(members), len(members) / len(generated), members[0]["case_id"],
                                         str(members[0].get("raw_output") or "")) for kind, members in ranked]


def option_probabilities(scores: Mapping[str, float | None], labels: Sequence[str]) -> list[float | None]:
    """Per-option probabilities from summed log-likelihoods: a softmax over the options (they sum to 1).
    A non-finite score (null) gets none, and the others are normalised among themselves."""
    finite = [scores.get(label) for label in labels]
    usable = [s for s in finite if s is not None and math.isfinite(s)]
    if not usable:
        return [None] * len(labels)
    top = max(usable)
    weights = [math.exp(s - top) if s is not None and math.isfinite(s) else None for s in finite]
    total = sum(w for w in weights if w is not None)
    return [None if w is None else w / total for w in weights]
