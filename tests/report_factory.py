"""Synthetic, schema-valid run reports for comparison tests, simulations and the diff benchmark.

Each item has a latent difficulty; a checkpoint answers a case correctly with probability
sigmoid(skill - difficulty - penalty(perturbation)). Two checkpoints drawn with the same skill are
equally good but their outcomes are correlated through the items, as real paired runs are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medgate.metrics import compute_metrics
from medgate.report import build_report

LABELS = "ABCD"
PENALTY = {"original": 0.0, "shuffle": 0.6, "typos": 0.3, "gold_to_nota": 0.9}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Design:
    """What a synthetic run contains."""

    datasets: tuple[str, ...] = ("synth-en", "synth-es")
    items: int = 40
    perturbations: tuple[str, ...] = ("original", "shuffle")
    prompts: tuple[tuple[str, str], ...] = (("p0", "loglik"), ("p1", "loglik"), ("j0", "generate"))
    question_words: int = 24


@dataclass
class Population:
    """The items of a design with their latent difficulties (shared by every checkpoint)."""

    design: Design
    seed: int = 0
    spread: float = 1.5  # standard deviation of item difficulty: larger makes two runs agree more often
    difficulty: dict[tuple[str, str], float] = field(init=False)
    gold: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        keys = [(d, f"{i:05d}") for d in self.design.datasets for i in range(self.design.items)]
        self.difficulty = {k: float(v) for k, v in zip(keys, rng.normal(0.0, self.spread, len(keys)))}
        self.gold = {k: int(v) for k, v in zip(keys, rng.integers(0, len(LABELS), len(keys)))}


def simulate_records(population: Population, skill: float, rng: np.random.Generator,
                     drop: Mapping[tuple[str, str, str], float] | None = None) -> list[dict[str, Any]]:
    """One checkpoint's case records. `drop` lowers the log-odds of correct in (dataset, perturbation, prompt) blocks."""
    design = population.design
    records = []
    for dataset in design.datasets:
        language = dataset.rsplit("-", 1)[-1] if dataset[-3:] in ("-en", "-es") else "en"
        for perturbation in design.perturbations:
            for prompt, mode in design.prompts:
                shift = (drop or {}).get((dataset, perturbation, prompt), 0.0)
                for index in range(design.items):
                    item_id = f"{index:05d}"
                    key = (dataset, item_id)
                    logit = skill - population.difficulty[key] - PENALTY.get(perturbation, 0.5) - shift
                    correct = bool(rng.random() < 1.0 / (1.0 + np.exp(-logit)))
                    gold = population.gold[key]
                    chosen = gold if correct else int((gold + rng.integers(1, len(LABELS))) % len(LABELS))
                    question = f"Question {item_id} of {dataset}: " + " ".join(
                        f"word{(index * 7 + w) % 97}" for w in range(design.question_words)) + "?"
                    options = [{"label": label, "text": f"option {label} for {item_id}"} for label in LABELS]
                    record: dict[str, Any] = {
                        "case_id": f"{dataset}/{item_id}/{perturbation}/{prompt}",
                        "item_id": item_id, "dataset": dataset, "language": language, "subject": "synthetic",
                        "pair_id": f"pair-{item_id}", "perturbation": perturbation, "prompt": prompt, "mode": mode,
                        "question": question, "options_presented": options, "gold_label": LABELS[gold],
                        "item_hash": _hash(f"{dataset}/{item_id}"), "prompt_hash": _hash(f"{prompt}/{language}"),
                        "predicted_label": LABELS[chosen], "correct": correct, "predicted_origin": chosen,
                        "non_finite": False, "truncated_tokens": 0,
                    }
                    if mode == "loglik":
                        record["scores"] = {label: (-0.2 if i == chosen else -2.5) for i, label in enumerate(LABELS)}
                    else:
                        valid = bool(rng.random() < 0.9)
                        record.update({"schema_valid": valid, "strict_answer": LABELS[chosen] if valid else None,
                                       "lenient_answer": LABELS[chosen], "lenient_correct": correct,
                                       "predicted_label": LABELS[chosen] if valid else None,
                                       "correct": correct and valid, "stop_reason": "eos",
                                       "raw_output": f'{{"answer": "{LABELS[chosen]}"}}'})
                    records.append(record)
    return records


def make_report(records: Sequence[dict[str, Any]], *, run_id: str = "synthetic", fingerprint: str = "f" * 64,
                seed: int = 0, perturbations: Sequence[str] | None = None,
                versions: Mapping[str, int] | None = None, with_metrics: bool = True) -> dict[str, Any]:
    names = list(perturbations or dict.fromkeys(r["perturbation"] for r in records))
    manifest = {
        "run_id": run_id,
        "model": {"alias": "synthetic", "kind": "local", "path": None, "fingerprint": fingerprint},
        "backend": "onnxruntime", "execution_provider": "CPUExecutionProvider", "device": "cpu",
        "libraries": {}, "datasets": [], "prompts": [],
        "perturbations": [{"name": n, "description": f"synthetic {n}", "version": (versions or {}).get(n, 1)}
                          for n in names],
        "seed": seed, "command_line": [], "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
    }
    return build_report(run_id=run_id, status="passed", manifest=manifest, cases=list(records), missing_cases=[],
                        metrics=compute_metrics(list(records)) if with_metrics else [], gates=[])
