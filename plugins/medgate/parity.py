"""ONNX Runtime against transformers on the same prompts: `medgate parity --model M`.

Reports the largest absolute difference of the raw next-token logits (full vocabulary, last
prompt position), of the scored label log-probabilities, the predicted-label agreement, and for
JSON prompts whether the generated text is identical. fp32 on CPU must agree on every label;
fp16 on CUDA on at least 99.5% (fp16 rounding can swap near-ties).

`--prefix-sharing` compares instead one backend with and without prefix sharing (the same labels and
texts are required, and scores within 1e-4), and reports the tokens each computed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgate.backends import BackendSettings, BackendUnavailable, cuda_refusal
from medgate.backends.engine import left_pad
from medgate.backends.export import ExportError
from medgate.cases import Case, by_group, expand_cases
from medgate.datasets import DatasetError, UnknownDataset, default_data_dir, load_dataset
from medgate.metrics.records import CaseRecord
from medgate.models import ModelError, ModelRef, resolve_model
from medgate.options import POSITIVE
from medgate.perturbations import PerturbationError, resolve_set
from medgate.prompts import MODES, PromptError, select_prompts
from medgate.predictor import ModelLoadError, Predictor, PredictorSettings
from medgate.preparation import encode, prepare
from medgate.report.document import ReportPathError, check_output_file, emit_text

REQUIRED_AGREEMENT = {"cpu": 1.0, "cuda": 0.995}
SHARING_TOLERANCE = 1e-4  # largest log-probability difference prefix sharing may make
LOGIT_SAMPLE = 32  # prompts whose full logit vectors are compared
# A full comparison on a real model runs for an hour on a CPU: say where it is this often.
PROGRESS_EVERY_S = 60.0


def predict_by_group(predictor: Predictor, cases: Sequence[Case], label: str) -> list[CaseRecord]:
    """Every case's record, in order, predicted group by group as a run predicts them, with a line
    on stderr at most every PROGRESS_EVERY_S seconds."""
    records: dict[str, CaseRecord] = {}
    started = shown = time.monotonic()
    for members in by_group(cases).values():
        for case, record in zip(members, predictor.predict(members)):
            records[case.case_id] = record
        now = time.monotonic()
        if now - shown >= PROGRESS_EVERY_S:
            shown = now
            print(f"[parity] {label}: {len(records):,} of {len(cases):,} cases, {(now - started) / 60:.1f} min",
                  file=sys.stderr, flush=True)
    return [records[case.case_id] for case in cases]


def compare_backends(model: ModelRef, cases: Sequence[Case], device: str, threads: int | None = None) -> dict[str, Any]:
    dtype = "fp16" if device == "cuda" else "fp32"
    predictors = {
        name: Predictor(PredictorSettings(model, BackendSettings(name=name, device=device, dtype=dtype,
                                                                  threads=threads)))
        for name in ("onnxruntime", "torch")
    }
    records = {name: predict_by_group(predictor, cases, name) for name, predictor in predictors.items()}
    ort, ref = records["onnxruntime"], records["torch"]
    scored = [(a, b) for a, b in zip(ort, ref) if a["mode"] == "loglik"]
    generated = [(a, b) for a, b in zip(ort, ref) if a["mode"] == "generate"]
    agree = sum(a["predicted_label"] == b["predicted_label"] for a, b in zip(ort, ref))
    logprob_diff = max((abs(x - y) for a, b in scored for x, y in zip(a["scores"].values(), b["scores"].values())),
                       default=0.0)
    disagreements = [{"case_id": a["case_id"], "onnxruntime": a["predicted_label"], "torch": b["predicted_label"]}
                     for a, b in zip(ort, ref) if a["predicted_label"] != b["predicted_label"]]
    return {
        "model": model.alias,
        "device": device,
        "dtype": dtype,
        "cases": len(cases),
        "label_agreement": agree / len(cases) if cases else 1.0,
        "required_agreement": REQUIRED_AGREEMENT[device],
        "max_abs_logprob_diff": logprob_diff,
        "max_abs_logit_diff": _logit_difference(predictors, cases),
        "generations_identical": sum(a["raw_output"] == b["raw_output"] for a, b in generated),
        "generations": len(generated),
        "execution_provider": predictors["onnxruntime"].backend.info.execution_provider,
        "disagreements": disagreements[:50],
    }


def compare_prefix_sharing(model: ModelRef, cases: Sequence[Case], device: str, backend: str = "onnxruntime",
                           threads: int | None = None) -> dict[str, Any]:
    """The same backend run with and without prefix sharing, group by group as a run predicts them."""
    dtype = "fp16" if device == "cuda" else "fp32"
    records, work = {}, {}
    for sharing in (True, False):
        predictor = Predictor(PredictorSettings(model, BackendSettings(
            name=backend, device=device, dtype=dtype, threads=threads, token_budget=1024 if device == "cpu" else 16384,
            max_token_budget=1024 if device == "cpu" else 16384, prefix_sharing=sharing)))
        records[sharing] = predict_by_group(predictor, cases, "shared prefixes" if sharing else "whole prompts")
        work[sharing] = {mode: dict(counts.__dict__) for mode, counts in predictor.backend.work.items()}  # type: ignore[attr-defined]
    shared, whole = records[True], records[False]
    scored = [(a, b) for a, b in zip(shared, whole) if a["mode"] == "loglik"]
    generated = [(a, b) for a, b in zip(shared, whole) if a["mode"] == "generate"]
    difference = max((abs(x - y) for a, b in scored for x, y in zip(a["scores"].values(), b["scores"].values())),
                     default=0.0)
    agree = sum(a["predicted_label"] == b["predicted_label"] for a, b in zip(shared, whole))
    identical = sum(a["raw_output"] == b["raw_output"] for a, b in generated)
    return {
        "model": model.alias, "backend": backend, "device": device, "dtype": dtype, "cases": len(cases),
        "label_agreement": agree / len(cases) if cases else 1.0, "max_abs_logprob_diff": difference,
        "generations_identical": identical, "generations": len(generated), "token_work": work,
        "disagreements": [{"case_id": a["case_id"], "shared": a["predicted_label"], "whole": b["predicted_label"]}
                          for a, b in zip(shared, whole) if a["predicted_label"] != b["predicted_label"]][:50],
        "passed": agree == len(cases) and identical == len(generated) and difference <= SHARING_TOLERANCE,
    }


def _logit_difference(predictors: dict[str, Predictor], cases: Sequence[Case]) -> float:
    """Largest raw logit difference over the whole vocabulary at the last position of some prompts."""
    ort = predictors["onnxruntime"]
    tokenizer = ort.tokenizer
    prompts = []
    for case in [c for c in cases if c.mode == "loglik"][:LOGIT_SAMPLE]:
        request = encode(tokenizer, prepare(tokenizer, case.prompt, case.item), 0).request
        prompts.append(list(request.prompt_ids)[-ort.backend.info.max_context:])
    if not prompts:
        return 0.0
    worst = 0.0
    for start in range(0, len(prompts), 8):
        ids, mask = left_pad(prompts[start:start + 8], tokenizer.pad_token_id)
        index = np.full((ids.shape[0], 1), ids.shape[1] - 1, dtype=np.int64)
        a = predictors["onnxruntime"].backend.engine.model.logits_at(ids, mask, index).astype(np.float32)  # type: ignore[attr-defined]
        b = predictors["torch"].backend.engine.model.logits_at(ids, mask, index).astype(np.float32)  # type: ignore[attr-defined]
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dataset", action="append", help="repeatable (default: sample-en and sample-es)")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=POSITIVE, metavar="N", help="seeded sample of N items per dataset")
    parser.add_argument("--prompts", default="p0,j0", help="comma-separated prompt names, default or all (default p0,j0)")
    parser.add_argument("--perturbations", default="none", help="e.g. relabel_roman for multi-token labels")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--prefix-sharing", action="store_true",
                        help="compare ONNX Runtime with and without prefix sharing instead of against torch")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")


def run(args: argparse.Namespace) -> int:
    # medgate runs on ONNX Runtime; the reference (and the one-time export) on torch: both need CUDA.
    if args.device == "cuda" and (refusal := cuda_refusal(("onnxruntime", "torch"))):
        print(f"medgate parity: {refusal}", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            check_output_file(args.out)
        model = resolve_model(args.model)
        datasets = [load_dataset(name, default_data_dir(args.data_dir), args.limit)
                    for name in args.dataset or ("sample-en", "sample-es")]
        cases = expand_cases(datasets, resolve_set(args.perturbations), select_prompts(args.prompts, MODES),
                             seed=0, group_size=64)
        if not cases:
            raise ValueError("no case to compare: the datasets, prompts and perturbations select none")
        if args.prefix_sharing:
            result = compare_prefix_sharing(model, cases, args.device)
        else:
            result = compare_backends(model, cases, args.device)
    except (ModelError, ModelLoadError, DatasetError, UnknownDataset, BackendUnavailable, ExportError,
            PromptError, PerturbationError, ReportPathError, ValueError) as error:
        print(f"medgate parity: {error}", file=sys.stderr)
        return 2
    if args.prefix_sharing:
        return _print_sharing(result, args.out)
    passed = result["label_agreement"] >= result["required_agreement"]
    result["passed"] = passed
    print(f"{result['cases']} cases, {result['model']} on {result['execution_provider']} ({result['dtype']}) vs torch")
    print(f"  label agreement        {result['label_agreement']:.4%} (required {result['required_agreement']:.1%})")
    print(f"  max |logit| difference {result['max_abs_logit_diff']:.3g}")
    print(f"  max |log-prob| diff    {result['max_abs_logprob_diff']:.3g}")
    print(f"  identical generations  {result['generations_identical']}/{result['generations']}")
    if args.out and not emit_text(json.dumps(result, indent=2) + "\n", args.out, "medgate parity"):
        return 2
    return 0 if passed else 1


def _print_sharing(result: dict[str, Any], out: Path | None) -> int:
    print(f"{result['cases']} cases, {result['model']} on {result['backend']} ({result['dtype']}), "
          "prefix sharing against whole prompts")
    print(f"  label agreement        {result['label_agreement']:.4%} (required 100%)")
    print(f"  max |log-prob| diff    {result['max_abs_logprob_diff']:.3g} (allowed {SHARING_TOLERANCE:g})")
    print(f"  identical generations  {result['generations_identical']}/{result['generations']}")
    for mode, counts in result["token_work"][True].items():
        if counts["presented"]:
            print(f"  {mode:<8} tokens computed {counts['computed']:,} of {counts['presented']:,} presented "
                  f"({counts['computed'] / counts['presented']:.3f})")
    if out and not emit_text(json.dumps(result, indent=2, default=str) + "\n", out, "medgate parity"):
        return 2
    return 0 if result["passed"] else 1
