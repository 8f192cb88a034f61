"""The shared workload: sampled items, every case of them, and each case's rendered prompt, written once
for every contender.

medgate gets the items (its run expands the same cases from them: the same perturbations, prompts
and seed); the others get one line per case with the prompt exactly as medgate prepares it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medgate.cases import Case, expand_cases
from medgate.datasets import load_dataset
from medgate.preparation import encode, prepare
from medgate.tokenization import TextTokenizer


@dataclass(frozen=True)
class Workload:
    items_file: Path  # medgate item format, for the medgate contender
    prompts_file: Path  # {"id", "prompt", "continuations", "labels", "gold", "add_special_tokens"} per case
    cases: list[Case]
    prompt_tokens: int  # prompt tokens before truncation, summed over cases
    max_context: int
    perturbations: tuple[str, ...]
    prompts: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [case_key(c.item.id, c.perturbation, c.prompt) for c in self.cases]


def case_key(item_id: str, perturbation: str, prompt: str) -> str:
    """A case's name that survives the dataset's renaming in the items file."""
    return f"{item_id}/{perturbation}/{prompt}"


def prepare_workload(dataset: str, data_dir: Path, limit: int, seed: int, perturbations: Sequence[str],
                     prompts: Sequence[str], checkpoint: Path, folder: Path) -> Workload:
    loaded = load_dataset(dataset, data_dir, limit, seed)
    tokenizer = TextTokenizer(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    items_file, prompts_file = folder / "items.jsonl", folder / "prompts.jsonl"
    with items_file.open("w", encoding="utf-8") as items_out:
        for item in loaded.items:
            # A dataset name of its own: an item file may not pass as the registered dataset (whose
            # thresholds would gate this sample of it).
            record = {**item.to_dict(), "dataset": f"{item.dataset}-bench"}
            items_out.write(json.dumps(record, ensure_ascii=False) + "\n")
    # The cases as medgate's run will expand them from the items file.
    cases = expand_cases([load_dataset(str(items_file), data_dir, None, seed)], perturbations, prompts, seed,
                         group_size=64)
    total = 0
    with prompts_file.open("w", encoding="utf-8") as out:
        for case in cases:
            prepared = prepare(tokenizer, case.prompt, case.item)
            total += len(encode(tokenizer, prepared, 0).request.prompt_ids)
            out.write(json.dumps({"id": case_key(case.item.id, case.perturbation, case.prompt),
                                  "prompt": prepared.text, "continuations": list(prepared.continuations),
                                  "labels": list(case.item.labels), "gold": case.item.gold_index,
                                  "add_special_tokens": not tokenizer.uses_chat_template},
                                 ensure_ascii=False) + "\n")
    return Workload(items_file, prompts_file, cases, total, int(config.get("max_position_embeddings", 2048)),
                    tuple(perturbations), tuple(prompts))
