"""`--backend openai`: score and generate through an OpenAI-compatible server (vLLM first).

The checkpoint named by `--model` stays the source of truth for tokens: its tokenizer and chat
template render and encode every prompt here, and the server receives token-id lists, never text
to re-tokenize. Before any case, `connect` checks that the server serves that model (`/v1/models`)
and, where it offers `/tokenize` (vLLM), that it encodes a probe exactly as the local tokenizer.

Scoring, chosen per request (the counts of each are in the manifest):
  `logprob_token_ids`  every continuation is one token and the server takes vLLM's
                       `logprob_token_ids`: one pass over the prompt returns each label's exact
                       log-probability at the next position;
  `echo`               otherwise (multi-token labels, or servers without that field): prompt plus
                       continuation with `echo: true, logprobs: 0, max_tokens: 1`, summing the echoed
                       `token_logprobs` over the continuation (lm-evaluation-harness's protocol).
Generation is greedy with the token budget of `--max-new-tokens`; the engine's own JSON stop rule
is applied to the returned token ids here, so both paths end an answer at the same token.

Requests go out from a pool of `concurrency` threads per worker, several prompts per request.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgate.backends.base import (
    BackendInfo,
    BackendUnavailable,
    GenerateRequest,
    GenerateResult,
    ScoreRequest,
    ScoreResult,
    StopRule,
)
from medgate.backends.http import JsonClient, RetryPolicy, ServerProtocolError, ServerRejected, redact_url

if TYPE_CHECKING:
    from medgate.models import ModelRef

PROMPTS_PER_REQUEST = 8  # vLLM takes a list of prompts per request; its scheduler batches across requests
PROBE_TEXT = "A 45-year-old man presents with chest pain.\nAnswer: B"
SCORING_METHODS = ("logprob_token_ids", "echo")


class ServerMismatch(BackendUnavailable):
    """The server does not serve the checkpoint given with --model (or tokenizes differently)."""


@dataclass(frozen=True)
class ServerSettings:
    base_url: str  # the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # the environment variable holding the key, never the key
    concurrency: int = 8  # requests in flight per worker
    timeout: float = 120.0
    attempts: int = 5
    served_model: str | None = None  # the server's model id, when it cannot be matched to --model
    model_names: tuple[str, ...] = ()  # how --model was spelled (alias, hub id): matched to served ids
    scoring: str = "auto"  # "auto" (logprob_token_ids where it applies, else echo) or "echo" for every request


def check_base_url(url: str) -> str:
    """A usable base URL, or ValueError; credentials belong in --api-key-env, not in the URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}")
    if parts.username or parts.password or parts.query:
        raise ValueError("--base-url must not hold credentials or a query (it is recorded in the report); "
                         "put the key in an environment variable and name it with --api-key-env")
    return url.rstrip("/")


def _server_root(base_url: str) -> tuple[str, str]:
    """(root, API prefix): vLLM serves /tokenize and /version beside /v1, not under it."""
    trimmed = base_url.rstrip("/")
    if trimmed.endswith("/v1"):
        return trimmed[: -len("/v1")], "/v1"
    return trimmed, "/v1"


def api_key(settings: ServerSettings) -> str | None:
    if settings.api_key_env is None:
        return None
    value = os.environ.get(settings.api_key_env)
    if not value:
        raise BackendUnavailable(f"--api-key-env {settings.api_key_env}: that environment variable is not set")
    return value


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    root: str | None
    max_model_len: int | None
    engine: str | None  # the server's name and version, e.g. "vllm 0.32.0", where it says
    system_fingerprint: str | None  # the engine configuration's fingerprint (vLLM computes it at start-up)
    logprob_token_ids: bool  # the server accepts vLLM's logprob_token_ids
    tokenize_probe: str  # "agrees", or "not offered" where the server has no /tokenize

    def methods(self, scoring: str) -> tuple[str, ...]:
        """The scoring methods requests may use, best first."""
        return SCORING_METHODS if scoring == "auto" and self.logprob_token_ids else ("echo",)

    def cache_identity(self, scoring: str) -> str:
        """What a cached prediction from this server depends on besides the local checkpoint and the
        request: the served model, the engine version and configuration, and the scoring methods in
        use (with the continuations in each request's key, that fixes the method of each request)."""
        methods = "+".join(self.methods(scoring))
        return f"{self.model_id}|{self.root}|{self.engine}|{self.system_fingerprint}|{methods}"


def _names_for(checkpoint: Path, model_names: Sequence[str]) -> set[str]:
    names = {str(checkpoint), str(checkpoint.resolve()), checkpoint.name, *model_names}
    return {name.rstrip("/") for name in names if name} | {name.rstrip("/").split("/")[-1] for name in names if name}


def _pick_model(listed: Any, settings: ServerSettings, checkpoint: Path, model_names: Sequence[str],
                shown: str) -> dict[str, Any]:
    entries = listed.get("data") if isinstance(listed, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise ServerProtocolError(f"{shown}/v1/models did not list models: {str(listed)[:200]}")
    served = ", ".join(str(e["id"]) for e in entries) or "nothing"
    if settings.served_model is not None:
        for entry in entries:
            if entry["id"] == settings.served_model:
                return entry
        raise ServerMismatch(f"the server at {shown} serves {served}, not --served-model {settings.served_model}")
    wanted = _names_for(checkpoint, model_names)
    for entry in entries:
        names = {str(entry["id"]), str(entry.get("root") or "")}
        names |= {name.rstrip("/").split("/")[-1] for name in names if name}
        if names & wanted:
            return entry
    raise ServerMismatch(
        f"the server at {shown} serves {served}, which is not --model {model_names[0] if model_names else checkpoint} "
        f"({checkpoint}); start the server on that checkpoint, or name the served model with --served-model "
        "if it is the same checkpoint under another name"
    )


def connect(settings: ServerSettings, checkpoint: Path, tokenizer: Any,
            client: JsonClient | None = None) -> tuple[JsonClient, str, ServedModel]:
    """Check the server against the local checkpoint; a mismatch raises ServerMismatch."""
    root, api = _server_root(settings.base_url)
    client = client or JsonClient(root, api_key(settings), RetryPolicy(attempts=settings.attempts,
                                                                         timeout=settings.timeout))
    shown = client.shown_root
    entry = _pick_model(client.get(f"{api}/models"), settings, checkpoint, settings.model_names, shown)
    model_id = str(entry["id"])
    engine = _engine_version(client)
    probe = tokenizer.encode_prompt(PROBE_TEXT)
    tokenize = _tokenize_probe(client, model_id, probe, add_special=not tokenizer.uses_chat_template, shown=shown)
    logprob_ids, fingerprint = _probe_completion(client, api, model_id, probe)
    max_len = entry.get("max_model_len")
    served = ServedModel(model_id, str(entry.get("root")) if entry.get("root") else None,
                         int(max_len) if isinstance(max_len, int) else None, engine, fingerprint, logprob_ids,
                         tokenize)
    return client, api, served


def _engine_version(client: JsonClient) -> str | None:
    try:
        answer = client.get("/version")
    except ServerRejected:
        return None  # not offered (not vLLM); the cache key then says "None"
    if isinstance(answer, dict) and isinstance(answer.get("version"), str):
        return f"vllm {answer['version']}"
    return None


def _tokenize_probe(client: JsonClient, model_id: str, expected: Sequence[int], add_special: bool,
                    shown: str) -> str:
    text = PROBE_TEXT
    try:
        answer = client.post("/tokenize", {"model": model_id, "prompt": text, "add_special_tokens": add_special})
    except ServerRejected as error:
        if error.status in (404, 405):
            return "not offered"
        raise
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise ServerProtocolError(f"{shown}/tokenize answered without tokens: {str(answer)[:200]}")
    if list(tokens) != list(expected):
        raise ServerMismatch(f"the server at {shown} tokenizes a probe differently from the local tokenizer of "
                             f"--model: {list(tokens)[:12]}... against {list(expected)[:12]}...; it serves another "
                             "tokenizer (or another model)")
    return "agrees"


def _probe_completion(client: JsonClient, api: str, model_id: str,
                      probe: Sequence[int]) -> tuple[bool, str | None]:
    """(whether the server takes logprob_token_ids, its system_fingerprint), from one tiny request."""
    body = {"model": model_id, "prompt": [list(probe)], "max_tokens": 1, "temperature": 0}
    try:
        answer = client.post(f"{api}/completions", {**body, **_label_fields([probe[0]])})
        _label_logprobs(_ordered_choices(answer, 1)[0], [probe[0]])
        offers = True
    except (ServerRejected, ServerProtocolError):
        # A server that does not know the field refuses or ignores it: scoring falls back to echo.
        answer, offers = client.post(f"{api}/completions", body), False
    fingerprint = answer.get("system_fingerprint") if isinstance(answer, dict) else None
    return offers, str(fingerprint) if fingerprint else None


def check_server(settings: ServerSettings, model: ModelRef, allow_download: bool = False) -> ServedModel:
    """The start-up check, before any case: the server serves --model's checkpoint and agrees on tokens."""
    from medgate.models import materialize
    from medgate.tokenization import TextTokenizer

    checkpoint = materialize(model, allow_download)
    return connect(settings, checkpoint, TextTokenizer(checkpoint))[2]


# -- response parsing ---------------------------------------------------------------------------------


def _label_fields(label_ids: Sequence[int]) -> dict[str, Any]:
    """vLLM's fields for the log-probabilities of exactly `label_ids` at the first generated position,
    keyed `token_id:N` rather than by token text (two ids can decode to the same text)."""
    return {"logprob_token_ids": list(label_ids), "logprobs": len(label_ids), "return_tokens_as_token_ids": True}


def _label_logprobs(choice: dict[str, Any], label_ids: Sequence[int]) -> tuple[float, ...]:
    """The next-token log-probability of each of `label_ids` from a `logprob_token_ids` answer."""
    logprobs = choice.get("logprobs")
    tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    first = tops[0] if isinstance(tops, list) and tops else None
    if not isinstance(first, dict):
        raise ServerProtocolError(f"no top_logprobs for the labels in the answer: {str(choice)[:200]}")
    values: dict[int, float] = {}
    for key, value in first.items():
        if isinstance(key, str) and key.startswith("token_id:") and isinstance(value, (int, float)):
            values[int(key.removeprefix("token_id:"))] = float(value)
    missing = [i for i in label_ids if i not in values]
    if missing:
        raise ServerProtocolError(f"the answer lacks the log-probability of label token(s) {missing}: "
                                  f"{str(first)[:200]}")
    return tuple(values[i] for i in label_ids)


def _echo_logprob(choice: dict[str, Any], prompt_length: int, continuation_length: int) -> float:
    """Sum of the echoed log-probabilities at the continuation's positions (the last is generated)."""
    values = choice["logprobs"]["token_logprobs"]
    span = values[prompt_length:prompt_length + continuation_length]
    if len(span) != continuation_length or any(v is None for v in span):
        raise ServerProtocolError(f"the echoed token_logprobs do not cover the continuation: {len(values)} values "
                                  f"for a prompt of {prompt_length} and a continuation of {continuation_length}")
    return float(sum(span))


def _generated_ids(choice: dict[str, Any]) -> list[int]:
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return [int(i) for i in ids]
    raise ServerProtocolError(f"the completion has no token_ids (return_token_ids): {str(choice)[:200]}")


def _ordered_choices(answer: Any, count: int) -> list[dict[str, Any]]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != count:
        raise ServerProtocolError(f"expected {count} choice(s), got: {str(answer)[:200]}")
    return sorted(choices, key=lambda c: int(c.get("index", 0)))


def _truncate(ids: Sequence[int], limit: int) -> tuple[list[int], int]:
    """Drop tokens from the left, as the in-process engine does."""
    if len(ids) <= limit:
        return list(ids), 0
    return list(ids[len(ids) - limit:]), len(ids) - limit


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start:start + size])


# -- the backend ----------------------------------------------------------------------------------------


class OpenAIBackend:
    def __init__(self, settings: ServerSettings, checkpoint: Path, tokenizer: Any, max_context: int | None) -> None:
        self.settings = settings
        self.client, self._api, self.served = connect(settings, checkpoint, tokenizer)
        limits = [value for value in (self.served.max_model_len, max_context) if value]
        self.max_context = min(limits) if limits else 2048
        self._lock = threading.Lock()
        self.method_counts = dict.fromkeys(SCORING_METHODS, 0)
        self.system_fingerprints: set[str] = set()
        self.info = BackendInfo(
            name="openai",
            device="server",
            execution_provider=self.served.engine or "openai-compatible server",
            dtype="server",
            max_context=self.max_context,
            details={
                "server": {
                    "base_url": redact_url(settings.base_url),
                    "model_id": self.served.model_id,
                    "model_root": self.served.root,
                    "engine_version": self.served.engine,
                    "system_fingerprints": [],
                    "tokenize_probe": self.served.tokenize_probe,
                    "logprob_token_ids_offered": self.served.logprob_token_ids,
                    "scoring": settings.scoring,
                    "scoring_methods": self.method_counts,
                    "concurrency": settings.concurrency,
                    "timeout_s": settings.timeout,
                    "attempts": settings.attempts,
                    "retries": 0,
                },
                "cache_identity": self.served.cache_identity(settings.scoring),
            },
        )

    # -- requests -------------------------------------------------------------------------------------

    def _complete(self, body: dict[str, Any], count: int) -> list[dict[str, Any]]:
        answer = self.client.post(f"{self._api}/completions", {"model": self.served.model_id, **body})
        fingerprint = answer.get("system_fingerprint") if isinstance(answer, dict) else None
        with self._lock:
            if fingerprint:
                self.system_fingerprints.add(str(fingerprint))
            server = self.info.details["server"]
            server["system_fingerprints"] = sorted(self.system_fingerprints)
            server["retries"] = self.client.retries
        return _ordered_choices(answer, count)

    def _run_all(self, jobs: Sequence[Callable[[], None]]) -> None:
        """Run every job on the pool; the first failure cancels what has not started and is raised."""
        if len(jobs) == 1 or self.settings.concurrency == 1:
            for job in jobs:
                job()
            return
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="medgate-http") as pool:
            futures: list[Future[None]] = [pool.submit(job) for job in jobs]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]

    # -- scoring --------------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        results: list[ScoreResult | None] = [None] * len(requests)
        single: dict[tuple[int, ...], list[int]] = {}  # label ids -> requests scored with them
        echo: list[int] = []
        labels_at_once = "logprob_token_ids" in self.served.methods(self.settings.scoring)
        for index, request in enumerate(requests):
            if labels_at_once and all(len(c) == 1 for c in request.continuations):
                single.setdefault(tuple(c[0] for c in request.continuations), []).append(index)
            else:
                echo.append(index)
        jobs: list[Callable[[], None]] = []
        for label_ids, indices in single.items():
            for chunk in _chunks(indices, PROMPTS_PER_REQUEST):
                jobs.append(partial(self._score_labels, requests, chunk, label_ids, results))
        for chunk in self._echo_chunks(requests, echo):
            jobs.append(partial(self._score_echo, requests, chunk, results))
        self._run_all(jobs)
        return [result for result in results if result is not None]

    def _score_labels(self, requests: Sequence[ScoreRequest], chunk: list[int], label_ids: tuple[int, ...],
                      results: list[ScoreResult | None]) -> None:
        prompts = [_truncate(requests[i].prompt_ids, self.max_context - 1) for i in chunk]
        choices = self._complete({"prompt": [ids for ids, _ in prompts], "max_tokens": 1, "temperature": 0,
                                  **_label_fields(label_ids)}, len(chunk))
        for i, (_, dropped), choice in zip(chunk, prompts, choices):
            values = _label_logprobs(choice, label_ids)
            results[i] = ScoreResult(values, dropped, not all(_finite(v) for v in values))
        with self._lock:
            self.method_counts["logprob_token_ids"] += len(chunk)

    def _echo_chunks(self, requests: Sequence[ScoreRequest], indices: Sequence[int]) -> Iterator[list[int]]:
        """Whole requests per chunk, about PROMPTS_PER_REQUEST sequences each."""
        chunk: list[int] = []
        sequences = 0
        for index in indices:
            chunk.append(index)
            sequences += len(requests[index].continuations)
            if sequences >= PROMPTS_PER_REQUEST:
                yield chunk
                chunk, sequences = [], 0
        if chunk:
            yield chunk

    def _score_echo(self, requests: Sequence[ScoreRequest], chunk: list[int],
                    results: list[ScoreResult | None]) -> None:
        rows: list[tuple[int, int, int]] = []  # (request, prompt length kept, continuation length)
        sequences: list[list[int]] = []
        dropped = dict.fromkeys(chunk, 0)
        for i in chunk:
            for continuation in requests[i].continuations:
                # The server generates one token after the echo: prompt + continuation + 1 must fit.
                whole, cut = _truncate(list(requests[i].prompt_ids) + list(continuation), self.max_context - 1)
                dropped[i] = max(dropped[i], cut)
                rows.append((i, len(whole) - len(continuation), len(continuation)))
                sequences.append(whole)
        choices = self._complete({"prompt": sequences, "max_tokens": 1, "temperature": 0, "echo": True,
                                  "logprobs": 0}, len(sequences))
        sums: dict[int, list[float]] = {i: [] for i in chunk}
        for (i, prompt_length, length), choice in zip(rows, choices):
            sums[i].append(_echo_logprob(choice, prompt_length, length))
        for i in chunk:
            values = tuple(sums[i])
            results[i] = ScoreResult(values, dropped[i], not all(_finite(v) for v in values))
        with self._lock:
            self.method_counts["echo"] += len(chunk)

    # -- generation -----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest], eos_ids: frozenset[int],
                 stop: StopRule) -> list[GenerateResult]:
        results: list[GenerateResult | None] = [None] * len(requests)
        by_budget: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            by_budget.setdefault(request.max_new_tokens, []).append(index)
        jobs: list[Callable[[], None]] = []
        for budget, indices in by_budget.items():
            for chunk in _chunks(indices, PROMPTS_PER_REQUEST):
                jobs.append(partial(self._generate, requests, chunk, budget, eos_ids, stop, results))
        self._run_all(jobs)
        return [result for result in results if result is not None]

    def _generate(self, requests: Sequence[GenerateRequest], chunk: list[int], budget: int,
                  eos_ids: frozenset[int], stop: StopRule, results: list[GenerateResult | None]) -> None:
        prompts = [_truncate(requests[i].prompt_ids, max(1, self.max_context - budget)) for i in chunk]
        body: dict[str, Any] = {"prompt": [ids for ids, _ in prompts], "max_tokens": budget, "temperature": 0,
                                "return_token_ids": True}
        if eos_ids:
            body["stop_token_ids"] = sorted(eos_ids)
        choices = self._complete(body, len(chunk))
        for i, (_, dropped), choice in zip(chunk, prompts, choices):
            results[i] = _apply_stop_rule(_generated_ids(choice), budget, eos_ids, stop, dropped)

    def close(self) -> None:
        """Nothing is held between calls: each group opens its own pool."""


def _apply_stop_rule(generated: Sequence[int], budget: int, eos_ids: frozenset[int], stop: StopRule,
                     dropped: int) -> GenerateResult:
    """The tokens the in-process engine would have kept: up to an end-of-sequence token (dropped),
    the first position where the stop rule fires (kept), or the budget."""
    kept: list[int] = []
    for token in generated:
        if token in eos_ids:
            return GenerateResult(tuple(kept), "eos", dropped)
        kept.append(token)
        if stop(kept):
            return GenerateResult(tuple(kept), "stop", dropped)
        if len(kept) >= budget:
            break
    return GenerateResult(tuple(kept), "length", dropped)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
