"""Build the tiny model: `python -m medgate.tiny.build OUT [--seed S] [--noise X] [--untrained]`.

Run through `medgate.tiny.build_tiny`, which sets the determinism environment before torch loads.
Steps: train a byte-level BPE tokenizer (English + Spanish) on the rendered sample prompts, train a
small Llama to put the gold label first under the default prompt and to answer the JSON prompt
with the JSON object, optionally add seeded weight noise, save in Hugging Face format.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from medgate.items import Item, load_jsonl
from medgate.paths import fixtures_dir
from medgate.preparation import prepare
from medgate.prompts import continuation_text, prompt_library, render
from medgate.tiny.recipe import ARCHITECTURE, TRAINING_DATASETS, TRAINING_PROMPTS, TinyRecipe
from medgate.tokenization import TextTokenizer

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"[medgate make-tiny] {message}", file=sys.stderr, flush=True)


def sample_items() -> list[Item]:
    folder = fixtures_dir() / "datasets"
    return [item for name in TRAINING_DATASETS for item in load_jsonl(folder / f"{name}.jsonl", name)]


def tokenizer_corpus(items: list[Item]) -> list[str]:
    """Every prompt template rendered for every item, so all prompt wordings tokenize sensibly."""
    texts = []
    for item in items:
        for by_language in prompt_library().values():
            template = by_language.get(item.language)
            if template is None:
                continue
            prompt = render(template, item)
            texts.append(prompt.as_plain_text() + continuation_text(template, item.answer))
    return texts


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out: Path) -> None:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out))


def training_sequences(items: list[Item], tokenizer: TextTokenizer) -> list[tuple[list[int], int]]:
    """(token ids, index where the loss starts) for each item under each training prompt."""
    sequences = []
    for item in items:
        for name in TRAINING_PROMPTS:
            prepared = prepare(tokenizer, name, item, answers=(item.answer,))
            encoded = tokenizer.encode_choice(prepared.text, prepared.continuations)
            ids = list(encoded.prompt_ids) + list(encoded.continuations[0])
            if prepared.mode == "generate":
                ids.append(EOS_ID)
            sequences.append((ids, len(encoded.prompt_ids)))
    return sequences


def lr_at(step: int, settings: Any) -> float:
    if step < settings.warmup_steps:
        return float(settings.learning_rate * (step + 1) / settings.warmup_steps)
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return float(settings.learning_rate * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: LlamaForCausalLM, sequences: list[tuple[list[int], int]], recipe: TinyRecipe,
          quiet: bool) -> list[float]:
    settings = recipe.training
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, betas=settings.betas, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    for step in range(settings.steps):
        while len(order) < settings.batch_size:
            order += torch.randperm(len(sequences), generator=generator).tolist()
        batch = [sequences[i] for i in order[: settings.batch_size]]
        del order[: settings.batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, (ids, loss_from) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            labels[row, loss_from : len(ids)] = torch.tensor(ids[loss_from:])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
        optimizer.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == settings.steps - 1:
            elapsed = time.perf_counter() - started
            log(f"step {step + 1:>3}/{settings.steps}  loss {loss.item():.4f}  {elapsed:5.1f}s", quiet)
    model.eval()
    return losses


@torch.no_grad()
def add_noise(model: LlamaForCausalLM, factor: float, seed: int) -> None:
    """Seeded Gaussian noise on every weight tensor, scaled by that tensor's standard deviation."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    for _, parameter in sorted(model.named_parameters()):
        scale = parameter.float().std() if parameter.numel() > 1 else parameter.abs()
        noise = torch.randn(parameter.shape, generator=generator) * scale * factor
        parameter.add_(noise.to(parameter.dtype))


@torch.no_grad()
def training_accuracy(model: LlamaForCausalLM, items: list[Item], tokenizer: TextTokenizer) -> float:
    """Share of sample items whose gold label scores highest under the default loglik prompt."""
    correct = 0
    for item in items:
        prepared = prepare(tokenizer, TRAINING_PROMPTS[0], item)
        encoded = tokenizer.encode_choice(prepared.text, prepared.continuations)
        logits = model(torch.tensor([encoded.prompt_ids])).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, -1)
        scores = [float(logprobs[c[0]]) for c in encoded.continuations]
        correct += int(scores.index(max(scores)) == item.gold_index)
    return correct / len(items)


def build(out: Path, recipe: TinyRecipe, quiet: bool = False) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    started = time.perf_counter()
    items = sample_items()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(tokenizer_corpus(items), recipe.training.vocab_size)
    save_tokenizer(tokenizer, out)
    text_tokenizer = TextTokenizer(out)
    log(f"tokenizer: {text_tokenizer.vocab_size} tokens", quiet)
    config = LlamaConfig(
        vocab_size=text_tokenizer.vocab_size,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        **{k: v for k, v in ARCHITECTURE.items() if k != "model_type"},
    )
    model = LlamaForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"model: llama, {parameters:,} parameters", quiet)
    losses: list[float] = []
    if not recipe.untrained:
        sequences = training_sequences(items, text_tokenizer)
        log(f"training on {len(sequences)} sequences ({len(items)} items x {len(TRAINING_PROMPTS)} prompts)",
            quiet)
        losses = train(model, sequences, recipe, quiet)
    if recipe.noise is not None:
        add_noise(model, recipe.noise, recipe.seed)
    accuracy = training_accuracy(model, items, text_tokenizer)
    log(f"accuracy on the sample items under {TRAINING_PROMPTS[0]}: {accuracy:.1%}", quiet)
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID).save_pretrained(str(out))
    summary = {
        "recipe": {"seed": recipe.seed, "noise": recipe.noise, "untrained": recipe.untrained,
                   "key": recipe.key()},
        "parameters": parameters,
        "final_loss": losses[-1] if losses else None,
        "sample_accuracy_default_prompt": accuracy,
        "build_seconds": round(time.perf_counter() - started, 2),
        "note": "Test double for the medgate harness, not a clinical model.",
    }
    (out / "medgate_tiny.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"done in {summary['build_seconds']}s -> {out}", quiet)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgate.tiny.build")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=None)
    parser.add_argument("--untrained", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    recipe = TinyRecipe(seed=args.seed, noise=args.noise, untrained=args.untrained)
    with tempfile.TemporaryDirectory():
        build(args.out, recipe, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
