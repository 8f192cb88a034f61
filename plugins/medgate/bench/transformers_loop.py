"""The plain transformers loop a user would write: one forward pass per prompt, last-position logits
(and one per option where an option is more than one token).

Encoded as medgate encodes: a chat-formatted prompt already holds its special tokens, so none are
added to it (`add_special_tokens` of each line); an option's tokens are those of prompt + option
after the prompt's (lm-evaluation-harness's rule).

    python -m medgate.bench.transformers_loop CHECKPOINT PROMPTS.jsonl OUT.json [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgate.bench.transformers_loop")
    parser.add_argument("checkpoint")
    parser.add_argument("prompts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint, trust_remote_code=False)
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=dtype, trust_remote_code=False).to(args.device).eval()
    limit = model.config.max_position_embeddings
    rows = [json.loads(line) for line in args.prompts.open(encoding="utf-8")]
    predictions = []
    started = time.perf_counter()
    with torch.inference_mode():
        for row in rows:
            special = bool(row.get("add_special_tokens", True))
            prompt_ids = tokenizer(row["prompt"], add_special_tokens=special)["input_ids"]
            targets = [tokenizer(row["prompt"] + c, add_special_tokens=special)["input_ids"][len(prompt_ids):]
                       for c in row["continuations"]]
            if all(len(t) == 1 for t in targets):
                ids = torch.tensor([prompt_ids[-limit:]], device=args.device)
                logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
                scores = [float(logprobs[t[0]]) for t in targets]
            else:
                scores = []
                for target in targets:
                    whole = (prompt_ids + target)[-(limit + 1):]
                    ids = torch.tensor([whole[:-1]], device=args.device)
                    logprobs = torch.log_softmax(model(ids).logits[0, -len(target):].float(), dim=-1)
                    scores.append(float(sum(logprobs[j, token] for j, token in enumerate(target))))
            predictions.append(row["labels"][scores.index(max(scores))])
    seconds = time.perf_counter() - started
    args.out.write_text(json.dumps({"predictions": predictions, "eval_seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
