"""Running each contender as a timed process and reading its predictions back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgate.bench.workload import Workload, case_key
from medgate.paths import fixtures_dir

CONTENDERS = ("medgate", "transformers", "lm_eval")
# --backend openai: medgate's client (logprob_token_ids, and the echo protocol) against lm-eval's
# local-completions, all on the same server.
SERVER_CONTENDERS = ("medgate", "medgate_echo", "lm_eval")


@dataclass(frozen=True)
class Server:
    base_url: str  # http://host:port/v1
    model_id: str
    concurrency: int
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


class ContenderError(RuntimeError):
    pass


@dataclass
class Run:
    name: str
    wall_seconds: float
    eval_seconds: float
    predictions: list[str | None]
    details: dict[str, Any] = field(default_factory=dict)


def _timed(command: list[str], cwd: Path, log: Path, environment: dict[str, str] | None = None) -> float:
    env = {**os.environ, **OFFLINE, **(environment or {})}
    started = time.perf_counter()
    with log.open("w") as handle:
        completed = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                   env=env, check=False)
    wall = time.perf_counter() - started
    if completed.returncode not in (0, 1):  # 1: a gate or case failed, which is still a complete run
        tail = log.read_text()[-3000:]
        raise ContenderError(f"{' '.join(command[:4])}... exited {completed.returncode}:\n{tail}")
    return wall


def run_medgate(workload: Workload, checkpoint: Path, folder: Path, workers: int, device: str,
                server: Server | None = None, scoring: str = "auto", prefix_sharing: bool = True) -> Run:
    name = "medgate" if scoring == "auto" else f"medgate_{scoring}"
    report = folder / f"{name}-report.json"
    suites = fixtures_dir().parent / "suites" / "test_mcqa.py"
    # Only medgate's own pytest plugins, as where medgate is installed without the benchmark's
    # tools: in this environment lm-eval brings anyio's pytest plugin and the dev extra hypothesis's.
    command = [sys.executable, "-m", "pytest", str(suites), f"--model={checkpoint}",
               f"--dataset={workload.items_file}", "--prompts", ",".join(workload.prompts),
               "--perturbations", ",".join(workload.perturbations), f"--report={report}", "--no-prediction-cache", "-q", "-p", "no:cacheprovider", "-p", "medgate.pytest_plugin",
               "-p", "xdist.plugin"]
    if server is None:
        command.append(f"--device={device}")
    else:
        command += ["--backend", "openai", "--base-url", server.base_url, "--concurrency", str(server.concurrency),
                    "--scoring", scoring]
    if workers > 1:
        command += ["-n", str(workers)]
    if not prefix_sharing:
        command.append("--no-prefix-sharing")
    wall = _timed(command, fixtures_dir().parent, folder / f"{name}.log", {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    document = json.loads(report.read_text())
    by_case = {case_key(case["item_id"], case["perturbation"], case["prompt"]): case["predicted_label"]
               for case in document["cases"]}
    timing = document["manifest"]["timing"]
    details: dict[str, Any] = {"model_seconds": timing["model_seconds"], "workers": workers,
                               "execution_provider": document["manifest"]["execution_provider"],
                               "token_work": document["manifest"].get("token_work")}
    if server is not None:
        details["scoring_methods"] = document["manifest"]["server"]["scoring_methods"]
        details["concurrency"] = server.concurrency
    return Run(name, wall, timing["predict_seconds"], [by_case.get(key) for key in workload.keys], details)


def run_transformers(workload: Workload, checkpoint: Path, folder: Path, device: str, threads: int) -> Run:
    out = folder / "transformers.json"
    command = [sys.executable, "-m", "medgate.bench.transformers_loop", str(checkpoint), str(workload.prompts_file),
               str(out), "--device", device, "--threads", str(threads)]
    wall = _timed(command, folder, folder / "transformers.log")
    result = json.loads(out.read_text())
    return Run("transformers", wall, result["eval_seconds"], result["predictions"])


def write_lm_eval_task(workload: Workload, folder: Path) -> Path:
    """A task over the pre-rendered prompts: lm-eval scores target_delimiter + choice after the prompt."""
    tasks = folder / "lm_eval_tasks"
    tasks.mkdir(exist_ok=True)
    rows = [json.loads(line) for line in workload.prompts_file.open(encoding="utf-8")]
    data = tasks / "medgate_bench.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for row in rows:
            # lm-eval joins context and choice with target_delimiter; medgate's continuation is " <label>".
            choices = [c[1:] if c.startswith(" ") else c for c in row["continuations"]]
            handle.write(json.dumps({"prompt": row["prompt"], "choices": choices, "gold": row["gold"]}) + "\n")
    delimiter = " " if all(c.startswith(" ") for row in rows for c in row["continuations"]) else ""
    (tasks / "medgate_bench.yaml").write_text(
        "task: medgate_bench\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: prompt\n"
        "doc_to_choice: choices\n"
        "doc_to_target: gold\n"
        f"target_delimiter: {json.dumps(delimiter)}\n"
        "metric_list:\n  - metric: acc\n"
    )
    return tasks


def run_lm_eval(workload: Workload, checkpoint: Path, folder: Path, device: str, batch_size: str,
                server: Server | None = None) -> Run:
    tasks = write_lm_eval_task(workload, folder)
    output = folder / "lm_eval_out"
    timing = folder / "lm_eval_timing.json"
    dtype = "float16" if device == "cuda" else "float32"
    if server is None:
        model = ["--model", "hf", "--model_args",
                 f"pretrained={checkpoint},dtype={dtype},add_bos_token=True,max_length={workload.max_context},"
                 "trust_remote_code=False",
                 "--device", device]
    else:
        # Its echo protocol over token ids encoded with the same checkpoint's tokenizer; batch_size is
        # prompts per request, num_concurrent the requests in flight (as medgate's --concurrency).
        model = ["--model", "local-completions", "--model_args",
                 f"model={server.model_id},base_url={server.base_url}/completions,tokenizer_backend=huggingface,"
                 f"tokenizer={checkpoint},tokenized_requests=True,num_concurrent={server.concurrency},"
                 f"max_retries=3,max_length={workload.max_context}"]
    command = [sys.executable, "-m", "medgate.bench.lm_eval_timed", str(timing), "--", *model,
               "--tasks", "medgate_bench", "--include_path", str(tasks),
               "--batch_size", batch_size, "--output_path", str(output), "--log_samples"]
    wall = _timed(command, folder, folder / "lm_eval.log")
    samples = sorted(output.rglob("samples_medgate_bench_*.jsonl"))
    if not samples:
        raise ContenderError(f"lm-eval wrote no samples under {output}; see {folder / 'lm_eval.log'}")
    predictions: list[str | None] = [None] * len(workload.cases)
    for line in samples[-1].open(encoding="utf-8"):
        sample = json.loads(line)
        scores = [float(response[0]) for response in sample["filtered_resps"]]  # logged as strings
        predictions[sample["doc_id"]] = workload.cases[sample["doc_id"]].item.labels[scores.index(max(scores))]
    return Run("lm_eval", wall, json.loads(timing.read_text())["eval_seconds"], predictions,
               {"batch_size": batch_size})
