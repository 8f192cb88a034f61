"""From cases to outcome records: prepared prompts (preparation.py), one batched call per group through
the prompt runner (prompt_runner.py: tokenization and the backend, behind the prediction cache).

A `Predictor` lives on each pytest worker. The model, tokenizer and backend are created on first
use; cases are predicted a whole group at a time and the records kept until their cases ask.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medgate.backends import Backend, BackendSettings, BackendUnavailable, create_backend
from medgate.backends.http import ServerError
from medgate.cases import Case
from medgate.fingerprint import checkpoint_fingerprint
from medgate.metrics.records import CaseRecord
from medgate.models import ModelRef, materialize
from medgate.prediction_cache import PredictionCache, namespace_for
from medgate.preparation import PreparedPrompt, prepare
from medgate.prompt_runner import BackendRunner, CachingRunner, PromptRunner
from medgate.scoring import choose, parse_json_answer
from medgate.tokenization import TextTokenizer, TokenizerError


class ModelLoadError(RuntimeError):
    """The checkpoint, its tokenizer or its backend could not be made ready: every case would fail alike."""


@dataclass(frozen=True)
class PredictorSettings:
    model: ModelRef
    backend: BackendSettings
    max_new_tokens: int = 32
    record_prompts: bool = False
    allow_download: bool = False
    parity_backend: str | None = None  # also run this backend and record the largest difference
    cache_path: Path | None = None  # reuse earlier predictions of the same model and requests


@dataclass
class PredictorStats:
    cases: int = 0
    groups: int = 0
    model_seconds: float = 0.0  # time inside backend calls
    predict_seconds: float = 0.0  # whole group predictions: tokenization, model, records
    setup_seconds: float = 0.0  # model build/export/session creation
    truncated_cases: int = 0
    boundary_merges: int = 0
    parity_max_abs_diff: float = 0.0
    parity_label_disagreements: int = 0
    parity_cases: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    # Prompt tokens given to the model (what running each prompt whole computes) and those it ran,
    # after prefix sharing; generation counts its prefill only. None where the backend cannot say (a server).
    loglik_tokens_presented: int | None = None
    loglik_tokens_computed: int | None = None
    generate_prefill_tokens_presented: int | None = None
    generate_prefill_tokens_computed: int | None = None


class Predictor:
    def __init__(self, settings: PredictorSettings) -> None:
        self.settings = settings
        self.stats = PredictorStats()
        self._checkpoint: Path | None = None
        self._fingerprint: str | None = None
        self._tokenizer: TextTokenizer | None = None
        self._backend: Backend | None = None
        self._backend_failure: Exception | None = None
        self._generation_room_checked = False
        self._reference: Backend | None = None
        self._cache: PredictionCache | None = None
        self.runner: PromptRunner = BackendRunner(lambda: self.tokenizer, lambda: self.backend,
                                                  settings.max_new_tokens, self.stats)
        if settings.cache_path is not None and settings.parity_backend is None:
            self._cache = PredictionCache(settings.cache_path)
            self.runner = CachingRunner(self.runner, self._cache, lambda: self.cache_namespace, self._backend_record,
                                        settings.max_new_tokens, self.stats)

    # -- lazily built parts -------------------------------------------------------------------------

    def _load_error(self, what: str, error: Exception) -> ModelLoadError:
        return ModelLoadError(f"model {self.settings.model.describe()!r}: {what} failed: "
                              f"{type(error).__name__}: {error}")

    @property
    def checkpoint(self) -> Path:
        if self._checkpoint is None:
            started = time.perf_counter()
            try:
                self._checkpoint = materialize(self.settings.model, self.settings.allow_download)
            except Exception as error:
                raise self._load_error("finding the checkpoint", error) from error
            finally:
                self.stats.setup_seconds += time.perf_counter() - started
        return self._checkpoint

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            try:
                self._fingerprint = checkpoint_fingerprint(self.checkpoint)
            except ModelLoadError:
                raise
            except Exception as error:
                raise self._load_error("fingerprinting the checkpoint", error) from error
        return self._fingerprint

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            checkpoint = self.checkpoint
            try:
                self._tokenizer = TextTokenizer(checkpoint)
            except Exception as error:
                raise self._load_error("loading the tokenizer", error) from error
        return self._tokenizer

    @property
    def backend(self) -> Backend:
        if self._backend_failure is not None:
            # A failed export or session start would fail the same way for every later group, after
            # the same wait: say so at once instead.
            raise self._load_error(f"starting the {self.settings.backend.name} backend",
                                   BackendUnavailable(f"{self._backend_failure} (failed earlier in this process; "
                                                      "not retried)"))
        if self._backend is None:
            checkpoint, fingerprint, pad = self.checkpoint, self.fingerprint, self.tokenizer.pad_token_id
            started = time.perf_counter()
            try:
                self._backend = create_backend(self.settings.backend, checkpoint, fingerprint, pad)
            except ServerError:
                raise  # the server, not the model: the pytest layer says so (and stops on ServerDown)
            except Exception as error:
                self._backend_failure = error
                raise self._load_error(f"starting the {self.settings.backend.name} backend", error) from error
            finally:
                self.stats.setup_seconds += time.perf_counter() - started
        return self._backend

    def reference_backend(self) -> Backend:
        if self._reference is None:
            assert self.settings.parity_backend is not None
            settings = BackendSettings(**{**self.settings.backend.__dict__, "name": self.settings.parity_backend})
            self._reference = create_backend(settings, self.checkpoint, self.fingerprint,
                                             self.tokenizer.pad_token_id)
        return self._reference

    @property
    def cache_namespace(self) -> str:
        backend = self.settings.backend
        if backend.name == "openai":
            # What answered depends on the server too: its model id, engine version and scoring
            # methods (asked at connection, so even a fully cached run needs the server up).
            identity = str(self.backend.info.details["cache_identity"])
            return namespace_for(self.fingerprint, f"openai|{identity}", "server", "server", backend.max_context)
        # Shared-prefix and whole-prompt passes agree only to ~1e-5: a run that turns sharing off (for
        # parity or a benchmark) must compute, not read what the other path wrote.
        path = "shared-prefixes" if backend.prefix_sharing else "whole-prompts"
        return namespace_for(self.fingerprint, f"{backend.name}|{path}", backend.device, backend.dtype,
                             backend.max_context)

    def _backend_record(self) -> dict[str, Any] | None:
        if self._backend is not None:
            info = self._backend.info
            return {"backend": info.name, "execution_provider": info.execution_provider, "device": info.device,
                    "dtype": info.dtype, "max_context": info.max_context, "backend_details": info.details}
        if self._cache is not None and self._fingerprint is not None:
            return self._cache.backend_info(self.cache_namespace)
        return None

    def manifest(self) -> dict[str, Any]:
        """What this worker knows about the model and backend (merged into the report manifest)."""
        backend = self.settings.backend
        record = self._backend_record() or {
            "backend": backend.name, "execution_provider": None, "device": backend.device, "dtype": backend.dtype,
            "max_context": None, "backend_details": {},
        }
        return {
            "model_path": str(self._checkpoint) if self._checkpoint else None,
            "fingerprint": self._fingerprint,
            **record,
            "chat_template": self._tokenizer.uses_chat_template if self._tokenizer else None,
            "system_folded": self._tokenizer.refuses_system_messages if self._tokenizer else None,
            "stats": dict(self.stats.__dict__),
        }

    # -- prediction ---------------------------------------------------------------------------------

    def predict(self, cases: Sequence[Case]) -> list[CaseRecord]:
        started = time.perf_counter()
        records = self._predict(cases)
        self.stats.predict_seconds += time.perf_counter() - started
        return records

    def _predict(self, cases: Sequence[Case]) -> list[CaseRecord]:
        try:
            return self._predict_checked(cases)
        except TokenizerError as error:
            # The vocabulary loads on first use (a run served from the cache never needs it); a
            # malformed one, or a template failing on some text, would fail every later group alike.
            raise self._load_error("using the tokenizer", error) from error

    def _predict_checked(self, cases: Sequence[Case]) -> list[CaseRecord]:
        prepared = [self._prepare(case) for case in cases]
        records: list[CaseRecord | None] = [None] * len(cases)
        scoring = [i for i, p in enumerate(prepared) if p.mode == "loglik"]
        generating = [i for i, p in enumerate(prepared) if p.mode != "loglik"]
        if scoring:
            self._score([cases[i] for i in scoring], [prepared[i] for i in scoring], scoring, records)
        if generating:
            self._generate([cases[i] for i in generating], [prepared[i] for i in generating], generating, records)
        self.stats.cases += len(cases)
        self.stats.groups += 1
        return [record for record in records if record is not None]

    def _prepare(self, case: Case) -> PreparedPrompt:
        return prepare(self.tokenizer, case.prompt, case.item)

    def _score(self, cases: Sequence[Case], prepared: Sequence[PreparedPrompt], slots: Sequence[int],
               records: list[CaseRecord | None]) -> None:
        results = self.runner.score(prepared)
        reference = None
        if self.settings.parity_backend:
            reference = BackendRunner(lambda: self.tokenizer, self.reference_backend,
                                      self.settings.max_new_tokens).score(prepared)
        for index, (case, item, result) in enumerate(zip(cases, prepared, results)):
            labels = case.item.labels
            # NaN or inf scores choose nothing: argmax over them would name an option, right by chance.
            chosen = None if result.non_finite else choose(result.logprobs)
            record = _base_record(case, item, self.settings.record_prompts, correct=chosen == case.item.gold_index,
                                  predicted_origin=None if chosen is None else _origin(case, chosen))
            record.update({
                "predicted_label": None if chosen is None else labels[chosen],
                "scores": {label: round(value, 6) for label, value in zip(labels, result.logprobs)},
                "truncated_tokens": result.truncated_tokens,
                "non_finite": result.non_finite,
            })
            if reference is not None:
                other = reference[index].logprobs
                difference = max(abs(a - b) for a, b in zip(result.logprobs, other))
                record["parity_max_abs_diff"] = difference
                self.stats.parity_max_abs_diff = max(self.stats.parity_max_abs_diff, difference)
                self.stats.parity_label_disagreements += int(choose(other) != chosen)
                self.stats.parity_cases += 1
            self.stats.truncated_cases += int(result.truncated_tokens > 0)
            records[slots[index]] = record

    def _check_generation_room(self) -> None:
        """A generation budget over half the context would leave the prompts cut to a few tokens (or to
        nothing), and every generated case would answer a question it was not shown."""
        if self._generation_room_checked:
            return
        record = self._backend_record()
        if record is None:
            self.backend  # noqa: B018 - loads the backend, which knows the context
            record = self._backend_record()
        context = record.get("max_context") if record else None
        if isinstance(context, int) and self.settings.max_new_tokens > context // 2:
            raise ModelLoadError(f"--max-new-tokens {self.settings.max_new_tokens} leaves too little of the model's "
                                 f"context ({context} tokens) for the prompt: use at most {context // 2}")
        self._generation_room_checked = True

    def _generate(self, cases: Sequence[Case], prepared: Sequence[PreparedPrompt], slots: Sequence[int],
                  records: list[CaseRecord | None]) -> None:
        self._check_generation_room()
        tokenizer = self.tokenizer
        results = self.runner.generate(prepared)
        for index, (case, item, result) in enumerate(zip(cases, prepared, results)):
            output = tokenizer.decode(result.token_ids)
            answer = parse_json_answer("" if result.non_finite else output, case.item)
            labels = case.item.labels
            origin = _origin(case, labels.index(answer.lenient_answer)) if answer.lenient_answer in labels else None
            record = _base_record(case, item, self.settings.record_prompts,
                                  correct=answer.strict_answer == case.item.answer, predicted_origin=origin)
            record.update({
                "predicted_label": answer.strict_answer,
                "raw_output": output,
                "schema_valid": answer.schema_valid,
                "strict_answer": answer.strict_answer,
                "lenient_answer": answer.lenient_answer,
                "lenient_method": answer.lenient_method,
                "lenient_correct": answer.lenient_answer == case.item.answer,
                "stop_reason": result.stop_reason,
                "generated_tokens": len(result.token_ids),
                "truncated_tokens": result.truncated_tokens,
                "non_finite": result.non_finite,
            })
            self.stats.truncated_cases += int(result.truncated_tokens > 0)
            records[slots[index]] = record


def _origin(case: Case, presented_index: int) -> int | None:
    """Index in the published item of the option shown at `presented_index` (None if inserted)."""
    origin = case.item.extras.get("origin")
    if origin is None:
        return presented_index
    value = origin[presented_index]
    return None if value is None else int(value)


def _base_record(case: Case, prepared: PreparedPrompt, record_prompts: bool, *, correct: bool,
                 predicted_origin: int | None) -> CaseRecord:
    item = case.item
    record: CaseRecord = {
        "correct": correct,
        "predicted_origin": predicted_origin,
        "case_id": case.case_id,
        "item_id": item.id,
        "dataset": case.dataset,
        "language": item.language,
        "subject": item.subject,
        "pair_id": item.pair_id,
        "perturbation": case.perturbation,
        "prompt": case.prompt,
        "mode": case.mode,
        "question": item.question,
        "options_presented": [{"label": o.label, "text": o.text} for o in item.options],
        "gold_label": item.answer,
        "item_hash": case.source.content_hash(),
        "prompt_hash": prepared.template_hash,
    }
    if record_prompts:
        record["prompt_text"] = prepared.text
        if prepared.continuations:
            record["continuations"] = dict(zip(item.labels, prepared.continuations))
    return record
