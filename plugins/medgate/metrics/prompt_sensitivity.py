"""Prompt sensitivity (Mizrahi et al. 2024, "State of What Art? A Call for Multi-Prompt LLM
Evaluation"): per dataset x perturbation x mode run under two prompts or more, the accuracy under
each prompt; MaxP is the best of them, AvgP their mean, and the spread the best minus the worst.
A release is gated on the spread: a model whose answers hang on the wording of the instruction.
"""

from __future__ import annotations

from collections.abc import Sequence

from medgate.metrics.records import CaseRecord
from medgate.metrics.units import combo_of, group
from medgate.metrics.values import ALL, MetricValue, Statistic


def prompt_sensitivity(records: Sequence[CaseRecord], intervals: bool = True) -> list[Statistic]:
    found: list[Statistic] = []
    for (dataset, perturbation, mode), block in sorted(group(records, "dataset", "perturbation", "mode").items()):
        by_prompt = group(block, "prompt")
        if len(by_prompt) < 2:
            continue
        accuracies = [sum(bool(r["correct"]) for r in cases) / len(cases) for cases in by_prompt.values()]
        combos = frozenset(combo_of(r) for r in block)
        for name, value in (("prompt_spread", max(accuracies) - min(accuracies)),
                            ("prompt_max_accuracy", max(accuracies)),
                            ("prompt_mean_accuracy", sum(accuracies) / len(accuracies))):
            found.append(Statistic(MetricValue(name, dataset, perturbation, ALL, mode, round(value, 6), len(block),
                                               None, None, None), combos))
    return found
