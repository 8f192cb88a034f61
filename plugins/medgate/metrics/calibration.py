"""Calibration in log-likelihood mode: how far the model's confidence is from its accuracy.

Each option's probability is its continuation's likelihood normalised over the presented options
(a softmax of their log-likelihoods); the confidence of a case is the probability of the option it
chose. Expected calibration error (Guo et al. 2017): the cases binned by confidence into 10
equal-width bins ([0, 0.1), ..., [0.9, 1]), the mean over bins, weighted by their share of the
cases, of |accuracy - mean confidence|. Brier score (Brier 1950): the mean over cases of
sum over options of (probability - 1 if gold else 0)^2, from 0 (certain and right) to 2. Both with
95% percentile bootstrap intervals over the cases (1,000 resamples, seeded per cell).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import replace

from medgate.metrics.records import CaseRecord
from medgate.metrics.units import combo_of, each_prompt_and_all, group
from medgate.metrics.values import ALL, Cell, Combo, MetricValue, Statistic

BINS = 10
REPLICATES = 1000


def option_probabilities(record: CaseRecord) -> tuple[list[float], int, int] | None:
    """(probabilities in presented order, chosen index, gold index), or None without scores."""
    scores, options = record.get("scores"), record.get("options_presented")
    chosen, gold = record.get("predicted_label"), record.get("gold_label")
    if not scores or not options or chosen is None or gold is None:
        return None
    labels = [option["label"] for option in options]
    if set(labels) != set(scores) or chosen not in labels or gold not in labels:
        return None
    logits = [scores[label] for label in labels]
    top = max(logits)
    weights = [math.exp(value - top) for value in logits]
    total = sum(weights)
    return [w / total for w in weights], labels.index(chosen), labels.index(gold)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(BINS)]
    for confidence, right in zip(confidences, correct):
        bins[min(int(confidence * BINS), BINS - 1)].append((confidence, right))
    n = len(confidences)
    return sum(len(members) / n * abs(sum(r for _, r in members) / len(members) -
                                      sum(c for c, _ in members) / len(members))
               for members in bins if members)


def squared_error(probabilities: Sequence[float], gold: int) -> float:
    """One case's Brier term: the sum over options of (probability - 1 if gold else 0)^2."""
    return sum((p - (1.0 if index == gold else 0.0)) ** 2 for index, p in enumerate(probabilities))


def _bootstrap(confidences: list[float], correct: list[bool], squared_errors: list[float],
               seed: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% percentile intervals of (ECE, Brier), resampling cases with replacement."""
    import numpy as np  # here: a run without log-likelihood cases never needs numpy

    rng = np.random.default_rng(seed)
    n = len(confidences)
    draws = rng.integers(0, n, size=(REPLICATES, n))
    confidence = np.asarray(confidences)[draws]
    right = np.asarray(correct, dtype=np.float64)[draws]
    bins = np.minimum((confidence * BINS).astype(np.int64), BINS - 1) + BINS * np.arange(REPLICATES)[:, None]
    size = BINS * REPLICATES
    gaps = (np.bincount(bins.ravel(), weights=right.ravel(), minlength=size) -
            np.bincount(bins.ravel(), weights=confidence.ravel(), minlength=size)).reshape(REPLICATES, BINS)
    eces = np.abs(gaps).sum(axis=1) / n  # |B|/n * |acc_B - conf_B| = |sum(right - conf) over B| / n
    briers = np.asarray(squared_errors)[draws].mean(axis=1)
    low_e, high_e = np.percentile(eces, [2.5, 97.5])
    low_b, high_b = np.percentile(briers, [2.5, 97.5])
    return (float(low_e), float(high_e)), (float(low_b), float(high_b))


CaseCalibration = tuple[str, float, bool, float]  # case id, confidence, right, squared error


def case_calibration(record: CaseRecord) -> CaseCalibration | None:
    found = option_probabilities(record)
    if found is None:
        return None
    probabilities, chosen, gold = found
    return record.get("case_id", ""), probabilities[chosen], chosen == gold, squared_error(probabilities, gold)


def _calibration_cells(cells: list[Cell], rows: list[CaseCalibration], combos: frozenset[Combo],
                       intervals: bool) -> list[Statistic]:
    if not rows:
        return [Statistic(MetricValue(*cell, None, 0, None, None, None), combos) for cell in cells]
    if intervals:  # in case-id order: the resamples do not depend on the order the cases arrived in
        rows = sorted(rows)
    confidences = [confidence for _, confidence, _, _ in rows]
    correct = [right for _, _, right, _ in rows]
    squared = [error for _, _, _, error in rows]
    values = (expected_calibration_error(confidences, correct), sum(squared) / len(squared))
    if not intervals:
        return [Statistic(MetricValue(*cell, round(value, 6), len(rows), None, None, None), combos)
                for cell, value in zip(cells, values)]
    bounds = _bootstrap(confidences, correct, squared, zlib.crc32("|".join(cells[0]).encode("utf-8")))
    return [Statistic(MetricValue(*cell, round(value, 6), len(rows), round(low, 6), round(high, 6), None), combos)
            for cell, value, (low, high) in zip(cells, values, bounds)]


def calibration(records: Sequence[CaseRecord], intervals: bool = True) -> list[Statistic]:
    found: list[Statistic] = []
    scored = [r for r in records if r["mode"] == "loglik"]
    for (dataset, perturbation, mode), block in sorted(group(scored, "dataset", "perturbation", "mode").items()):
        per_prompt = each_prompt_and_all(block)
        if len(per_prompt) == 2:  # one prompt: `*` holds the same cases, and so the same values
            per_prompt = per_prompt[:1]
        summaries = {id(r): case_calibration(r) for r in block}  # once per case, not again for `*`
        for prompt, cases in per_prompt:
            cells = [(name, dataset, perturbation, prompt, mode) for name in ("ece", "brier")]
            rows = [row for row in (summaries[id(r)] for r in cases) if row is not None]
            found += _calibration_cells(cells, rows, frozenset(combo_of(r) for r in cases), intervals)
        if len(per_prompt) == 1:
            found += [Statistic(replace(s.value, prompt=ALL), s.combos) for s in found[-2:]]
    return found
