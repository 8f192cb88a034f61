"""Position bias and the answer-order sensitivity gap.

Position bias: in each block, the distribution of the presented positions the model chose against
the distribution of the gold's presented positions over the same cases. A model without a
preference for a position chooses each position about as often as the gold stands there. The
gateable value is the total-variation distance between the two distributions (0: the same; 1:
disjoint); beside it, a chi-square goodness-of-fit p-value of the chosen positions against the
gold positions (Pearson's test; a position chosen where no gold ever stands makes it 0). Cases
without an answer among the presented labels do not count.

Answer-order sensitivity gap: among the orderings of the options that ran (the original and the
perturbations that only move options: shuffle, reverse, gold last, rotations), the accuracy under
the best ordering minus that under the worst.
"""

from __future__ import annotations

from collections.abc import Sequence

from medgate.metrics.records import CaseRecord
from medgate.metrics.units import combo_of, each_prompt_and_all, group
from medgate.metrics.values import ALL, ORIGINAL, MetricValue, Statistic
from medgate.perturbations.answer_options import reorders_only
from medgate.stats import chi_square_sf


def _positions(record: CaseRecord) -> tuple[int, int] | None:
    """(chosen, gold) presented positions, or None without an answer among the presented labels."""
    options = record.get("options_presented")
    chosen, gold = record.get("predicted_label"), record.get("gold_label")
    if not options or chosen is None or gold is None:
        return None
    labels = [option["label"] for option in options]
    if chosen not in labels or gold not in labels:
        return None
    return labels.index(chosen), labels.index(gold)


def goodness_of_fit(chosen: Sequence[int], gold: Sequence[int]) -> tuple[float, float]:
    """(total-variation distance, chi-square p-value) of the chosen positions against the gold's."""
    n = len(chosen)
    size = max(*chosen, *gold) + 1
    observed, expected = [0] * size, [0] * size
    for position in chosen:
        observed[position] += 1
    for position in gold:
        expected[position] += 1
    distance = sum(abs(o - e) for o, e in zip(observed, expected)) / (2 * n)
    if any(o > 0 and e == 0 for o, e in zip(observed, expected)):
        return distance, 0.0  # a position chosen where the gold never stands: impossible under the null
    cells = [(o, e) for o, e in zip(observed, expected) if e > 0]
    if len(cells) < 2:
        return distance, 1.0  # every gold in one position, and every choice there too
    statistic = sum((o - e) ** 2 / e for o, e in cells)
    return distance, chi_square_sf(statistic, len(cells) - 1)


def position_bias(records: Sequence[CaseRecord], intervals: bool = True) -> list[Statistic]:
    found: list[Statistic] = []
    for (dataset, perturbation, mode), block in sorted(group(records, "dataset", "perturbation", "mode").items()):
        positions = {id(r): _positions(r) for r in block}  # once per case, not again for `*`
        for prompt, cases in each_prompt_and_all(block):
            pairs = [found_pair for found_pair in (positions[id(r)] for r in cases) if found_pair is not None]
            cell = ("position_bias", dataset, perturbation, prompt, mode)
            if not pairs:
                value = MetricValue(*cell, None, 0, None, None, None)
            else:
                distance, p_value = goodness_of_fit([c for c, _ in pairs], [g for _, g in pairs])
                value = MetricValue(*cell, round(distance, 6), len(pairs), None, None, None, p_value)
            found.append(Statistic(value, frozenset(combo_of(r) for r in cases)))
    return found


def order_sensitivity_gap(records: Sequence[CaseRecord], intervals: bool = True) -> list[Statistic]:
    orderings = [r for r in records if r["perturbation"] == ORIGINAL or reorders_only(r["perturbation"])]
    found: list[Statistic] = []
    for (dataset, mode), block in sorted(group(orderings, "dataset", "mode").items()):
        if len({r["perturbation"] for r in block}) < 2:
            continue
        for prompt, cases in each_prompt_and_all(block):
            accuracies = [sum(bool(r["correct"]) for r in ran) / len(ran)
                          for ran in group(cases, "perturbation").values()]
            cell = ("order_sensitivity_gap", dataset, ALL, prompt, mode)
            gap = round(max(accuracies) - min(accuracies), 6) if len(accuracies) > 1 else None
            value = MetricValue(*cell, gap, len(cases) if gap is not None else 0, None, None, None)
            found.append(Statistic(value, frozenset(combo_of(r) for r in cases)))
    return found
