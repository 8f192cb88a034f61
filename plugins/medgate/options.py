"""Run options, validated once when pytest parses its command line (shared with the CLI).

Everything a user can get wrong on the command line is checked here, so a typo is a usage error
before any worker starts or any model loads.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.backends import BACKENDS, cuda_refusal
from medgate.backends.openai import ServerSettings, check_base_url
from medgate.compare.regression import RegressionRule, RegressionRuleError, check_unique, parse_regression_rule
from medgate.compare.reports import ReportError, check_baseline_name
from medgate.datasets import DatasetError, UnknownDataset, check_available, default_data_dir
from medgate.datasets.sampling import parse_subset
from medgate.gates import GateConfigError, Thresholds, load_thresholds, parse_threshold_override, thresholds_file
from medgate.models import ModelError, ModelRef, resolve_model
from medgate.perturbations import PerturbationError, resolve_set
from medgate.report.document import ReportPathError, check_output_file
from medgate.prompts import MODES, PromptError, select_prompts

DEFAULT_DATASETS = ("sample-en", "sample-es")


class OptionError(ValueError):
    pass


@dataclass(frozen=True)
class RunOptions:
    model: ModelRef
    backend: str
    device: str  # "auto", "cpu" or "cuda"
    datasets: tuple[str, ...]
    data_dir: Path
    limit: int | None
    seed: int
    subsets: tuple[tuple[str, str], ...]
    perturbations: tuple[str, ...]
    prompts: tuple[str, ...]
    modes: tuple[str, ...]
    thresholds: Thresholds
    report: Path | None
    record_prompts: bool
    check_parity: bool
    group_size: int
    token_budget: int | None
    max_new_tokens: int
    allow_download: bool
    gpu_mem_limit: int | None
    max_context: int | None
    prediction_cache: bool
    prefix_sharing: bool = True
    compare: str | None = None  # a report file or the name of a saved baseline
    save_baseline: str | None = None
    regression_rules: tuple[RegressionRule, ...] = ()
    server: ServerSettings | None = None  # --backend openai
    extra: dict[str, Any] = field(default_factory=dict)


def _converter(function: Any, *errors: type[Exception]) -> Any:
    """Wrap a parser so argparse (and pytest) report its error as a usage error for that option."""
    caught: tuple[type[Exception], ...] = (*errors, ValueError)

    def convert(text: str) -> Any:
        try:
            return function(text)
        except caught as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = getattr(function, "__name__", "value")
    return convert


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or a positive integer, got {text}")
    return value


def given_path(text: str) -> Path:
    """A path option: never empty (it would quietly mean the default or the current folder), `~` expanded
    (no shell expands it after `--option=`)."""
    if not text.strip():
        raise ValueError("an empty path: give a file or folder, or leave the option out")
    return Path(text).expanduser()


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number of seconds, got {text}")
    return value


def parse_size(text: str) -> int:
    """`8GB`, `512MiB`, `1000000` -> bytes."""
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    cleaned = text.strip().lower()
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number):]
    try:
        return int(float(number) * units[unit])
    except (KeyError, ValueError):
        raise ValueError(f"cannot read size {text!r} (use e.g. 20GiB or 8000MB)") from None


MODEL = _converter(resolve_model, ModelError)
THRESHOLD = _converter(parse_threshold_override, GateConfigError)
SUBSET = _converter(parse_subset)
PERTURBATIONS = _converter(lambda text: tuple(resolve_set(text)), PerturbationError)
POSITIVE = _converter(positive_int)
NON_NEGATIVE = _converter(non_negative_int)
FILE_PATH = _converter(given_path)
SECONDS = _converter(positive_float)
BASE_URL = _converter(check_base_url)
SIZE = _converter(parse_size)
REGRESSION = _converter(parse_regression_rule, RegressionRuleError)
BASELINE_NAME = _converter(check_baseline_name, ReportError)


def run_options(ns: argparse.Namespace | Any) -> RunOptions:
    """Assemble the parsed options and check what spans several of them."""
    model: ModelRef = ns.medgate_model
    modes = MODES if ns.medgate_mode == "both" else (ns.medgate_mode,)
    try:
        prompts = tuple(dict.fromkeys(select_prompts(ns.medgate_prompts, modes)))
        thresholds = load_thresholds(thresholds_file(model.alias, ns.medgate_thresholds),
                                     ns.medgate_threshold or ())
    except (PromptError, GateConfigError) as error:
        raise OptionError(str(error)) from None
    if not prompts:
        raise OptionError(f"--prompts {ns.medgate_prompts!r} selects no prompt for mode(s) {', '.join(modes)}")
    rules = tuple(getattr(ns, "medgate_fail_on_regression", None) or ())
    compare = getattr(ns, "medgate_compare", None)
    if rules and not compare:
        raise OptionError("--fail-on-regression needs a baseline to compare with: add --compare REPORT|NAME")
    try:
        check_unique(rules)
    except RegressionRuleError as error:
        raise OptionError(str(error)) from None
    server = server_settings(ns, model)
    if ns.medgate_device == "cuda" and server is not None:
        raise OptionError("--device does not apply to --backend openai: the server decides where the model runs")
    if ns.medgate_device == "cuda" and (refusal := cuda_refusal((ns.medgate_backend,))):
        raise OptionError(refusal)
    report = ns.medgate_report
    if report is not None:
        try:
            check_output_file(report)  # before the run, not after it
        except ReportPathError as error:
            raise OptionError(f"--report {error}") from None
    datasets = tuple(dict.fromkeys(ns.medgate_dataset or DEFAULT_DATASETS))  # a repeated name runs once
    data_dir = default_data_dir(ns.medgate_data_dir)
    for name in datasets:
        try:
            check_available(name, data_dir)
        except UnknownDataset as error:
            raise OptionError(error.args[0]) from None
        except DatasetError as error:
            raise OptionError(str(error)) from None
    return RunOptions(
        model=model,
        backend=ns.medgate_backend,
        device=ns.medgate_device,
        datasets=datasets,
        data_dir=data_dir,
        limit=ns.medgate_limit,
        seed=ns.medgate_seed,
        subsets=tuple(ns.medgate_subset or ()),
        perturbations=ns.medgate_perturbations,
        prompts=prompts,
        modes=modes,
        thresholds=thresholds,
        report=report,
        record_prompts=ns.medgate_record_prompts,
        check_parity=ns.medgate_check_parity,
        group_size=ns.medgate_group_size,
        token_budget=ns.medgate_token_budget,
        max_new_tokens=ns.medgate_max_new_tokens,
        allow_download=ns.medgate_download,
        gpu_mem_limit=ns.medgate_gpu_mem_limit,
        max_context=ns.medgate_max_context,
        prediction_cache=not ns.medgate_no_cache,
        prefix_sharing=not ns.medgate_no_prefix_sharing,
        compare=compare,
        save_baseline=getattr(ns, "medgate_save_baseline", None),
        regression_rules=rules,
        server=server,
    )


def server_settings(ns: argparse.Namespace | Any, model: ModelRef) -> ServerSettings | None:
    """--backend openai and the options that only it takes, checked together."""
    base_url = getattr(ns, "medgate_base_url", None)
    if ns.medgate_backend != "openai":
        given = [flag for flag, dest in (("--base-url", "medgate_base_url"), ("--api-key-env", "medgate_api_key_env"),
                                         ("--served-model", "medgate_served_model"))
                 if getattr(ns, dest, None)]
        if given:
            raise OptionError(f"{', '.join(given)} only apply to --backend openai")
        return None
    if not base_url:
        raise OptionError("--backend openai needs --base-url, the server's OpenAI-compatible endpoint "
                          "(e.g. http://127.0.0.1:8000/v1)")
    key_env = getattr(ns, "medgate_api_key_env", None)
    if key_env and not os.environ.get(key_env):
        raise OptionError(f"--api-key-env {key_env}: that environment variable is not set (or empty)")
    names = tuple(name for name in (model.alias, model.hub_id) if name)
    return ServerSettings(base_url=base_url, api_key_env=key_env, concurrency=ns.medgate_concurrency,
                          timeout=ns.medgate_request_timeout, attempts=ns.medgate_request_attempts,
                          served_model=getattr(ns, "medgate_served_model", None), model_names=names,
                          scoring=ns.medgate_scoring)


def add_run_arguments(add: Any) -> None:
    """Declare the options on an argparse parser or a pytest option group (same signature)."""
    add("--model", dest="medgate_model", default=os.environ.get("MEDGATE_MODEL") or "tiny", type=MODEL,
        help="model alias from fixtures/models.toml, a local checkpoint folder, a hub id org/name[@rev], "
             "or random:<config> (default: tiny, or $MEDGATE_MODEL)")
    add("--backend", dest="medgate_backend", default="onnxruntime", choices=BACKENDS,
        help="onnxruntime (default: exported once via Optimum), torch (transformers reference) or openai "
             "(an OpenAI-compatible server such as vLLM, given with --base-url)")
    add("--base-url", dest="medgate_base_url", type=BASE_URL, metavar="URL",
        help="--backend openai: the server's OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    add("--api-key-env", dest="medgate_api_key_env", metavar="NAME",
        help="--backend openai: the environment variable holding the API key (the key itself is never "
             "taken on the command line nor written to a report)")
    add("--served-model", dest="medgate_served_model", metavar="ID",
        help="--backend openai: the server's id for --model's checkpoint, when the server names it otherwise")
    add("--concurrency", dest="medgate_concurrency", type=POSITIVE, default=8, metavar="N",
        help="--backend openai: requests in flight per worker (default 8; -n W workers make W x N)")
    add("--scoring", dest="medgate_scoring", default="auto", choices=("auto", "echo"),
        help="--backend openai: auto (default) scores one-token labels with vLLM's logprob_token_ids and "
             "the rest with the echo protocol; echo uses the echo protocol for every request")
    add("--request-timeout", dest="medgate_request_timeout", type=SECONDS, default=120.0, metavar="SECONDS",
        help="--backend openai: seconds per request attempt (default 120)")
    add("--request-attempts", dest="medgate_request_attempts", type=POSITIVE, default=5, metavar="N",
        help="--backend openai: tries per request on connection errors, timeouts, 429 and 5xx, with "
             "exponential back-off from 0.5 s (default 5)")
    add("--device", dest="medgate_device", default="auto", choices=("auto", "cpu", "cuda"),
        help="auto uses CUDA when ONNX Runtime offers it, else CPU")
    add("--dataset", dest="medgate_dataset", action="append", metavar="NAME|FILE",
        help="registered dataset or .jsonl item file; repeatable (default: sample-en and sample-es)")
    add("--data-dir", dest="medgate_data_dir", type=FILE_PATH, metavar="DIR",
        help="where upstream dataset files live (default: $MEDGATE_DATA_DIR or a per-user cache)")
    add("--limit", dest="medgate_limit", type=POSITIVE, metavar="N",
        help="seeded sample of N items per dataset, stratified by subject")
    add("--seed", dest="medgate_seed", type=int, default=0, metavar="N",
        help="seed for sampling and perturbations (default 0)")
    add("--subset", dest="medgate_subset", action="append", type=SUBSET, metavar="KEY=VALUE",
        help="keep items whose KEY (subject, language, id, pair_id) equals VALUE; repeatable")
    add("--perturbations", dest="medgate_perturbations", default="none", type=PERTURBATIONS, metavar="SET|NAMES",
        help="none (default), a set from fixtures/perturbations.toml (one-step, two-step, all, circular) or "
             "names a,b+c")
    add("--prompts", dest="medgate_prompts", default="default", metavar="default|all|NAMES",
        help="prompt templates: default (p0 / j0), all, or comma-separated names")
    add("--mode", dest="medgate_mode", default="loglik", choices=("loglik", "generate", "both"),
        help="loglik scores each label; generate asks for a JSON answer; both")
    add("--threshold", dest="medgate_threshold", action="append", type=THRESHOLD, metavar="NAME=VALUE",
        help="override a gate threshold, e.g. accuracy=0.9; repeatable")
    add("--thresholds", dest="medgate_thresholds", metavar="FILE",
        help="thresholds file (default: fixtures/thresholds/<model>.toml, else default.toml)")
    add("--report", dest="medgate_report", type=FILE_PATH, metavar="FILE",
        help="write the JSON report exactly here")
    add("--record-prompts", dest="medgate_record_prompts", action="store_true",
        help="store each case's exact prompt text and scored continuations in the report")
    add("--check-parity", dest="medgate_check_parity", action="store_true",
        help="also run the other backend on every case and record the largest score difference")
    add("--group-size", dest="medgate_group_size", type=POSITIVE, default=64, metavar="N",
        help="cases per batched prediction group, which holds every perturbation of its items under one prompt "
             "(default 64)")
    add("--no-prefix-sharing", dest="medgate_no_prefix_sharing", action="store_true",
        help="run every prompt whole instead of computing each token prefix that a group's prompts share once "
             "(for parity checks and benchmarks)")
    add("--token-budget", dest="medgate_token_budget", type=POSITIVE, metavar="N",
        help="fixed padded tokens per forward pass (default: 1024 on CPU; on CUDA from 16384, doubling while a "
             "pass takes under 1 s, halved on out-of-memory)")
    add("--max-new-tokens", dest="medgate_max_new_tokens", type=POSITIVE, default=32, metavar="N",
        help="generation budget in generate mode (default 32)")
    add("--download", dest="medgate_download", action="store_true",
        help="allow downloading a hub model that is not in the local cache")
    add("--gpu-mem-limit", dest="medgate_gpu_mem_limit", type=SIZE, metavar="SIZE",
        help="cap each worker's ONNX Runtime CUDA arena, e.g. 20GiB")
    add("--max-context", dest="medgate_max_context", type=POSITIVE, metavar="N",
        help="cap the model context (prompts are truncated from the left, and counted)")
    add("--compare", dest="medgate_compare", metavar="REPORT|NAME",
        help="compare the run with a report file or a baseline saved for this model (reports/baselines/<model>/)")
    add("--save-baseline", dest="medgate_save_baseline", type=BASELINE_NAME, metavar="NAME",
        help="store the run's report as reports/baselines/<model>/NAME.json, to commit and compare with later")
    add("--fail-on-regression", dest="medgate_fail_on_regression", action="append", type=REGRESSION,
        metavar="METRIC:MARGINpp",
        help="with --compare: fail when METRIC fell by more than MARGIN percentage points and the fall is "
             "significant (exact McNemar, Holm-corrected over every cell compared), e.g. accuracy:2pp; repeatable")
    add("--no-prediction-cache", dest="medgate_no_cache", action="store_true",
        help="recompute every prediction instead of reusing cached ones")
