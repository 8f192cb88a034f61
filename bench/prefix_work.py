"""Prompt tokens a run presents and those prefix sharing computes, by the engine's own plan, without
running the model (for a model too slow to run every case here).

    python bench/prefix_work.py --model build/smollm2 --dataset medqa --limit 50 \
        --data-dir ../shared/datasets/raw [--perturbations all] [--prompts all] [--mode both]

Cases, groups, preparation, truncation, windows and split points are those of a run (the default
group size and generation budget); only the forward passes are left out.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

from medgate.backends.base import GenerateRequest, ScoreRequest
from medgate.backends.engine import score_rows
from medgate.backends.prefix_runner import PrefixRunner
from medgate.backends.prefix_tree import plan_prefixes
from medgate.cases import by_group, expand_cases
from medgate.checkpoint_files import read_checkpoint_json
from medgate.datasets import default_data_dir, load_dataset
from medgate.models import materialize, resolve_model
from medgate.perturbations import resolve_set
from medgate.preparation import encode, prepare
from medgate.prompts import MODES, select_prompts
from medgate.tokenization import TextTokenizer

MAX_NEW_TOKENS = 32
GROUP_SIZE = 64


def kv_bytes_per_token(config: dict[str, object]) -> int:
    """fp32 key/value bytes per token, as the ONNX Runtime backend holds them on a CPU."""
    heads = int(config["num_attention_heads"])  # type: ignore[call-overload]
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)  # type: ignore[call-overload]
    kv_heads = int(config.get("num_key_value_heads") or heads)  # type: ignore[call-overload]
    return int(config["num_hidden_layers"]) * 2 * kv_heads * head_dim * 4  # type: ignore[call-overload]


def planned_work(rows: list[list[int]], wanted: list[int], per_token: int) -> int:
    runner = PrefixRunner(SimpleNamespace(kv_bytes_per_token=per_token), map_batches=None)  # type: ignore[arg-type]
    computed = 0
    for window in runner.windows(rows):
        heads = [rows[i][:len(rows[i]) - wanted[i]] for i in window]
        computed += plan_prefixes(heads).computed_tokens([len(rows[i]) for i in window])
    return computed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/prefix_work.py")
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="medqa")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--data-dir")
    parser.add_argument("--perturbations", default="all")
    parser.add_argument("--prompts", default="all")
    parser.add_argument("--mode", default="both", choices=("loglik", "generate", "both"))
    args = parser.parse_args(argv)
    checkpoint = materialize(resolve_model(args.model))
    config = read_checkpoint_json(checkpoint, "config.json")
    context = int(config.get("max_position_embeddings") or 2048)
    per_token = kv_bytes_per_token(config)
    tokenizer = TextTokenizer(checkpoint)
    modes = MODES if args.mode == "both" else (args.mode,)
    dataset = load_dataset(args.dataset, default_data_dir(args.data_dir), args.limit)
    cases = expand_cases([dataset], resolve_set(args.perturbations), select_prompts(args.prompts, modes), 0,
                         GROUP_SIZE)
    groups = by_group(cases)
    totals = {mode: {"presented": 0, "computed": 0} for mode in ("loglik", "generate")}
    for members in groups.values():
        requests = [encode(tokenizer, prepare(tokenizer, c.prompt, c.item), MAX_NEW_TOKENS).request for c in members]
        if members[0].mode == "loglik":
            rows, wanted, _, _ = score_rows([r for r in requests if isinstance(r, ScoreRequest)], context)
            mode = "loglik"
        else:
            limit = max(1, context - MAX_NEW_TOKENS)
            rows = [list(r.prompt_ids)[-limit:] for r in requests if isinstance(r, GenerateRequest)]
            wanted = [1] * len(rows)
            mode = "generate"
        totals[mode]["presented"] += sum(len(row) for row in rows)
        totals[mode]["computed"] += planned_work(rows, wanted, per_token)
    for mode, counts in totals.items():
        if counts["presented"]:
            counts["computed_fraction"] = round(counts["computed"] / counts["presented"], 4)  # type: ignore[assignment]
    print(json.dumps({"model": args.model, "cases": len(cases), "groups": len(groups), **totals}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
