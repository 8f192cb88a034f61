"""The report manifest: what ran, on what, with which data, prompts, perturbations and gates."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from typing import Any

from medgate import __version__
from medgate.perturbations import get as get_perturbation
from medgate.prompts import prompt_library
from medgate.report.document import host_info, library_versions


def model_slug(model_alias: str) -> str:
    """A file-name-safe model name: the last path component of the alias (run ids, baseline folders).

    Never `.` or `..` (`--model=/x/sub/..` must not save its baselines outside reports/baselines/)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_alias.rstrip("/").split("/")[-1]).strip("-.") or "model"


def new_run_id(started_at: dt.datetime, model_alias: str) -> str:
    """`20261203-113329-3fa94c-tiny`: the random part keeps two runs started in the same second (on
    one machine or on two writing to one folder) from sharing a report path."""
    return f"{started_at:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}-{model_slug(model_alias)}"


def _worker_summary(workers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The model and backend as the workers saw them (the first that loaded a model)."""
    for _, manifest in sorted(workers.items()):
        if manifest.get("fingerprint"):
            return manifest
    return next(iter(workers.values()), {}) if workers else {}


TOKEN_WORK_MODES = {"loglik": "loglik_tokens", "generate_prefill": "generate_prefill_tokens"}


def token_work(stats: list[dict[str, Any]], prefix_sharing: bool) -> dict[str, Any]:
    """Per mode, prompt tokens presented to the model and tokens it computed (after prefix sharing),
    summed over workers; null where no worker's backend could count (a server)."""
    work: dict[str, Any] = {"prefix_sharing": prefix_sharing}
    for mode, key in TOKEN_WORK_MODES.items():
        presented = [s[f"{key}_presented"] for s in stats if s.get(f"{key}_presented") is not None]
        computed = [s[f"{key}_computed"] for s in stats if s.get(f"{key}_computed") is not None]
        total, done = (sum(presented), sum(computed)) if presented else (None, None)
        work[mode] = {"presented": total, "computed": done,
                      "computed_fraction": round(done / total, 4) if total and done is not None else None}
    return work


def _parity(workers: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    stats = [m.get("stats", {}) for m in workers.values()]
    cases = sum(s.get("parity_cases", 0) for s in stats)
    if not cases:
        return None
    return {
        "cases": cases,
        "max_abs_logprob_diff": max(s.get("parity_max_abs_diff", 0.0) for s in stats),
        "label_disagreements": sum(s.get("parity_label_disagreements", 0) for s in stats),
    }


def _server(workers: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """--backend openai: the server as the workers saw it, with request counts summed over workers."""
    seen = [m["backend_details"]["server"] for m in workers.values()
            if isinstance(m.get("backend_details"), dict) and m["backend_details"].get("server")]
    if not seen:
        return None
    merged = dict(seen[0])
    merged["scoring_methods"] = {method: sum(s.get("scoring_methods", {}).get(method, 0) for s in seen)
                                 for method in seen[0].get("scoring_methods", {})}
    merged["retries"] = sum(s.get("retries", 0) for s in seen)
    merged["system_fingerprints"] = sorted({f for s in seen for f in s.get("system_fingerprints", [])})
    merged["in_flight_limit"] = merged.get("concurrency", 1) * len(workers)  # requests per worker x workers
    return merged


def truncation_by_dataset(records: Any) -> dict[str, dict[str, int]]:
    """Cases whose prompt lost tokens from the left to fit the context, per dataset (never silent)."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        dropped = record.get("truncated_tokens", 0)
        if dropped:
            entry = counts.setdefault(record["dataset"], {"cases": 0, "max_tokens_dropped": 0})
            entry["cases"] += 1
            entry["max_tokens_dropped"] = max(entry["max_tokens_dropped"], dropped)
    return counts


def build_manifest(state: Any, config: Any, controller: Any, run_id: str, started_at: dt.datetime,
                   started: float) -> dict[str, Any]:
    options = state.options
    workers = controller.workers
    if not workers and state.worker is not None:  # no xdist: this process predicted
        workers = {"main": state.worker.predictor.manifest()}
    seen = _worker_summary(workers)
    try:
        datasets = [d.provenance for d in state.plan.datasets]
    except Exception as error:  # noqa: BLE001 - the manifest must not stop the report
        datasets = [{"error": str(error)}]
    languages = sorted({item.language for d in state.plan.datasets for item in d.items}) if datasets else []
    library = prompt_library()
    prompts = [
        {"name": name, "language": language, "mode": t.mode, "hash": t.content_hash, "description": t.description}
        for name in options.prompts for language, t in sorted(library[name].items()) if language in languages
    ]
    finished_at = dt.datetime.now(dt.timezone.utc)
    stats = [m.get("stats", {}) for m in workers.values()]
    return {
        "run_id": run_id,
        "medgate_version": __version__,
        "model": {
            "alias": options.model.alias,
            "kind": options.model.kind,
            "path": seen.get("model_path"),
            "hub_id": options.model.hub_id,
            "revision": options.model.revision,
            "fingerprint": seen.get("fingerprint"),
            "chat_template": seen.get("chat_template"),
            "system_folded": seen.get("system_folded"),  # the template refuses system messages
        },
        "backend": seen.get("backend", options.backend),
        "execution_provider": seen.get("execution_provider"),
        "device": seen.get("device", options.device),
        "dtype": seen.get("dtype"),
        "max_context": seen.get("max_context"),
        "libraries": library_versions(),
        "host": host_info(),
        "datasets": datasets,
        "prompts": prompts,
        "perturbations": [get_perturbation(name).definition() for name in options.perturbations],
        "modes": list(options.modes),
        "seed": options.seed,
        "thresholds": {"source": options.thresholds.source, "rules": options.thresholds.rules},
        "parity": _parity(workers),
        "server": _server(workers),
        "command_line": list(config.invocation_params.args),
        "workers": workers,
        "crashed_workers": controller.crashed_workers,
        "timing": {
            "model_seconds": round(sum(s.get("model_seconds", 0.0) for s in stats), 3),
            "predict_seconds": round(sum(s.get("predict_seconds", 0.0) for s in stats), 3),
            "setup_seconds": round(sum(s.get("setup_seconds", 0.0) for s in stats), 3),
            "wall_seconds": round(time.perf_counter() - started, 3),
        },
        "truncated_cases": sum(s.get("truncated_cases", 0) for s in stats),
        "truncation": truncation_by_dataset(controller.records.values()),
        "prediction_cache": {"hits": sum(s.get("cache_hits", 0) for s in stats),
                             "misses": sum(s.get("cache_misses", 0) for s in stats)},
        "token_work": token_work(stats, options.prefix_sharing),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
    }
