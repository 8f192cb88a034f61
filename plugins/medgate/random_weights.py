"""`--model random:<config>`: a real architecture with seeded random weights, for throughput work.

The config comes from fixtures/models/configs/<config>.json (Llama-3.1-8B, Llama-3.2-1B, and a
small smoke shape). The tokenizer is medgate's own byte-level BPE (the tiny model's), whose ids all
fall inside any of these vocabularies; its prompts are longer than Llama 3's tokenizer would make
them (about 3 characters per token instead of 4), which the benchmark reports as tokens/s.
Building needs torch and transformers and runs once, in a subprocess, under a file lock. An 8B
model needs the GPU (or ~40 GB of RAM): with CUDA available the weights are made in bf16 on the GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from medgate.models import ModelError
from medgate.paths import cache_dir, fixtures_dir

BUILD_VERSION = 1
COMPLETE_MARKER = "medgate_random.json"


def config_path(name: str) -> Path:
    folder = fixtures_dir() / "models" / "configs"
    path = folder / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.json")))
        raise ModelError(f"unknown random model config {name!r}; known: {known}")
    return path


def ensure_random_checkpoint(name: str, seed: int = 0) -> Path:
    source = config_path(name)
    key = hashlib.sha256(source.read_bytes() + f"|{BUILD_VERSION}|{seed}".encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"random-{name}-{key}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        staging = target.with_name(f"{target.name}.building-{os.getpid()}")
        command = [sys.executable, "-m", "medgate.random_weights", str(source), str(staging), "--seed", str(seed)]
        print(f"[medgate] building random weights for {name} once...", file=sys.stderr, flush=True)
        completed = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
        if completed.returncode != 0 or not (staging / COMPLETE_MARKER).is_file():
            raise ModelError(f"building random:{name} failed (exit {completed.returncode})")
        os.replace(staging, target)
    return target


def build(source: Path, out: Path, seed: int) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from medgate.tiny.build import BOS_ID, EOS_ID, PAD_ID, sample_items, save_tokenizer, tokenizer_corpus, train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(train_tokenizer(tokenizer_corpus(sample_items()), 1536), out)
    raw = {k: v for k, v in json.loads(source.read_text()).items() if not k.startswith("_")}
    raw.update(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    config = AutoConfig.for_model(**raw)
    torch.manual_seed(seed)
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    with torch.device("cuda" if on_gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="5GB")
    GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID).save_pretrained(str(out))
    parameters = sum(p.numel() for p in model.parameters())
    record = {"config": source.name, "seed": seed, "parameters": parameters, "dtype": str(dtype),
              "note": "random weights: for throughput measurements only"}
    (out / COMPLETE_MARKER).write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgate.random_weights")
    parser.add_argument("config", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.config, args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
