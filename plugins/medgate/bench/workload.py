"""The shared workload: sampled items and their rendered prompts, written once for every contender."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medgate.datasets import load_dataset
from medgate.items import Item
from medgate.prompts import continuation_text, render, template_for
from medgate.tokenization import TextTokenizer


@dataclass(frozen=True)
class Workload:
    items_file: Path  # medgate item format, for the medgate contender
    prompts_file: Path  # {"id", "prompt", "continuations", "labels", "gold"} per line, for the others
    items: list[Item]
    prompt_tokens: int  # prompt tokens before truncation, summed over items
    max_context: int


def prepare(dataset: str, data_dir: Path, limit: int, seed: int, prompt: str, checkpoint: Path,
            folder: Path) -> Workload:
    loaded = load_dataset(dataset, data_dir, limit, seed)
    tokenizer = TextTokenizer(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    items_file, prompts_file = folder / "items.jsonl", folder / "prompts.jsonl"
    total = 0
    with items_file.open("w", encoding="utf-8") as items_out, prompts_file.open("w", encoding="utf-8") as out:
        for item in loaded.items:
            # A dataset name of its own: an item file may not pass as the registered dataset (whose
            # thresholds would gate this sample of it).
            record = {**item.to_dict(), "dataset": f"{item.dataset}-bench"}
            items_out.write(json.dumps(record, ensure_ascii=False) + "\n")
            template = template_for(prompt, item.language)
            text = tokenizer.prompt_text(render(template, item))
            continuations = [tokenizer.continuation_text(continuation_text(template, label)) for label in item.labels]
            total += len(tokenizer.encode_prompt(text))
            out.write(json.dumps({"id": item.id, "prompt": text, "continuations": continuations,
                                  "labels": list(item.labels), "gold": item.gold_index}, ensure_ascii=False) + "\n")
    return Workload(items_file, prompts_file, loaded.items, total, int(config.get("max_position_embeddings", 2048)))
