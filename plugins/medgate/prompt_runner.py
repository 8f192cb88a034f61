"""Prepared prompts in, results out: a backend behind tokenization, and the prediction cache as a layer
around any such runner (as lm-evaluation-harness's CachingLM wraps an LM, but after preparation, so a
hit skips tokenization as well as the model).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from medgate.backends.base import Backend, GenerateResult, ScoreRequest, ScoreResult
from medgate.prediction_cache import PredictionCache, request_key
from medgate.preparation import PreparedPrompt, encode
from medgate.scoring import json_object_closed
from medgate.tokenization import TextTokenizer

Result = TypeVar("Result", ScoreResult, GenerateResult)


class PromptRunner(Protocol):
    def score(self, prompts: Sequence[PreparedPrompt]) -> list[ScoreResult]: ...

    def generate(self, prompts: Sequence[PreparedPrompt]) -> list[GenerateResult]: ...


class BackendRunner:
    """Tokenizes and calls a backend; `stats` (a PredictorStats), when given, gets the time in the model,
    the boundary merges and the backend's token accounting."""

    def __init__(self, tokenizer: Callable[[], TextTokenizer], backend: Callable[[], Backend], max_new_tokens: int,
                 stats: Any | None = None) -> None:
        self._tokenizer, self._backend = tokenizer, backend
        self.max_new_tokens = max_new_tokens
        self.stats = stats

    def score(self, prompts: Sequence[PreparedPrompt]) -> list[ScoreResult]:
        tokenizer = self._tokenizer()
        encoded = [encode(tokenizer, p, self.max_new_tokens) for p in prompts]
        if self.stats is not None:
            self.stats.boundary_merges += sum(e.boundary_merges for e in encoded)
        requests = [e.request for e in encoded]
        assert all(isinstance(r, ScoreRequest) for r in requests)
        return self._timed(lambda backend: backend.score(requests))  # type: ignore[arg-type]

    def generate(self, prompts: Sequence[PreparedPrompt]) -> list[GenerateResult]:
        tokenizer = self._tokenizer()
        requests = [encode(tokenizer, p, self.max_new_tokens).request for p in prompts]

        def stop(tokens: Sequence[int]) -> bool:
            return json_object_closed(tokenizer.decode(tokens))

        return self._timed(lambda backend: backend.generate(requests, tokenizer.eos_token_ids, stop))  # type: ignore[arg-type]

    def _timed(self, call: Callable[[Backend], list[Result]]) -> list[Result]:
        backend = self._backend()
        started = time.perf_counter()
        results = list(call(backend))
        if self.stats is not None:
            self.stats.model_seconds += time.perf_counter() - started
            work = getattr(backend, "work", None)
            if work is not None:  # the engine's totals so far (one backend per runner)
                self.stats.loglik_tokens_presented = work["loglik"].presented
                self.stats.loglik_tokens_computed = work["loglik"].computed
                self.stats.generate_prefill_tokens_presented = work["generate"].presented
                self.stats.generate_prefill_tokens_computed = work["generate"].computed
        return results


class CachingRunner:
    """Answers from the prediction cache what it holds (keyed by the prompt text and the namespace of
    model and backend) and asks `inner` for the rest, storing what comes back."""

    def __init__(self, inner: PromptRunner, cache: PredictionCache, namespace: Callable[[], str],
                 backend_record: Callable[[], dict[str, Any] | None], max_new_tokens: int, stats: Any) -> None:
        self.inner, self.cache = inner, cache
        self._namespace, self._backend_record = namespace, backend_record
        self.max_new_tokens = max_new_tokens
        self.stats = stats

    def score(self, prompts: Sequence[PreparedPrompt]) -> list[ScoreResult]:
        return self._through(prompts, None, self.inner.score)

    def generate(self, prompts: Sequence[PreparedPrompt]) -> list[GenerateResult]:
        return self._through(prompts, self.max_new_tokens, self.inner.generate)

    def _through(self, prompts: Sequence[PreparedPrompt], max_new_tokens: int | None,
                 compute: Callable[[Sequence[PreparedPrompt]], list[Result]]) -> list[Result]:
        namespace = self._namespace()
        keys = [request_key(namespace, p.text, p.continuations, max_new_tokens) for p in prompts]
        found: dict[str, Any] = dict(self.cache.get_many(keys))
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.stats.cache_hits += len(prompts) - len(missing)
        self.stats.cache_misses += len(missing)
        if missing:
            computed = compute([prompts[i] for i in missing])
            self.cache.put_many([(keys[i], result) for i, result in zip(missing, computed)])
            record = self._backend_record()
            if record is not None:
                self.cache.remember_backend(namespace, record)
            found.update({keys[i]: result for i, result in zip(missing, computed)})
        return [found[key] for key in keys]
