"""Batched scoring and greedy decoding on top of a minimal logits interface.

Both backends implement `LogitsModel` (three array functions); this module owns everything else:
left truncation, length-sorted batches with left padding, the single-forward path when every
continuation is one token, fp32 log-softmax, non-finite detection, KV-cache greedy decoding with
early stop, out-of-memory back-off, and restoring the caller's order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from medgate.backends.base import BackendInfo, GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, StopRule
from medgate.backends.settings import BackendSettings
from medgate.backends.prefix_runner import PrefixRunner, Segment, TokenWork, left_aligned_states

Decoded = tuple[list[int], str, bool]  # one row's generated tokens, why it stopped, whether a logit was NaN/inf

# Token accounting keys: log-likelihood scoring, and generation's prefill (decoding steps are not counted).
WORK_MODES = ("loglik", "generate")


class LogitsModel(Protocol):
    max_context: int
    pad_id: int

    def logits_at(self, ids: np.ndarray, mask: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Logits [B, K, V] (any float dtype) at positions `index` [B, K] of left-padded `ids` [B, T]."""

    def start(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        """Prefill: logits [B, V] at the last position and a decoding state."""

    def step(self, state: Any, next_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        """One decoding step: logits [B, V] for `next_ids` [B] with `mask` [B, T+1], new state."""

    def extend(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray] | None,
               index: np.ndarray, keep_states: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run `ids` [B, S] after `past` (each layer's key then value, [B, heads, P, dim] on the host;
        None for P = 0) under `mask` [B, P + S]: logits [B, K, V] at `index` [B, K] of the S new
        positions, and (if `keep_states`, else []) the key/value states [B, heads, P + S, dim] on
        the host, in the same layout."""

    def decoding_state(self, past: list[np.ndarray]) -> Any:
        """A `step` state from host key/value arrays laid out as `extend` returns them."""


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in ("out of memory", "failed to allocate", "bad_alloc",
                                             "cudaerrormemoryallocation"))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Along the last axis, in float32 whatever the model's dtype (fp16 logits overflow otherwise)."""
    values = logits.astype(np.float32, copy=False)
    peak = values.max(axis=-1, keepdims=True)
    shifted = values - peak
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    return np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
    return ids, mask


def next_batch(order: Sequence[int], start: int, lengths: Sequence[int], token_budget: int,
               max_batch: int, padded: Callable[[list[int]], int] | None = None) -> list[int]:
    """The next batch from a longest-first `order`: as many rows as fit `token_budget` padded tokens.

    `padded(batch)` counts a batch's padded tokens where the sort length alone does not (rows that
    continue from states of different widths); by default the first, longest row sets the width."""
    if padded is None:
        width = lengths[order[start]]
        size = max(1, min(max_batch, token_budget // max(1, width), len(order) - start))
        return list(order[start:start + size])
    batch = [order[start]]
    for index in order[start + 1:start + max_batch]:
        if padded(batch + [index]) > token_budget:
            break
        batch.append(index)
    return batch


@dataclass
class BatchPolicy:
    """Padded tokens per forward pass, chosen as the run goes.

    The budget doubles while a forward pass takes under half the latency target (bigger batches keep
    a GPU busy), up to `max_budget`; an out-of-memory error halves it and caps it below the size that
    failed, so it never grows back into the same error.
    """

    token_budget: int = 8192
    max_batch: int = 256
    min_budget: int = 64
    max_budget: int = 8192
    latency_target: float = 2.0  # seconds per forward pass

    def shrink(self) -> None:
        self.max_budget = max(self.min_budget, self.token_budget - 1)
        self.token_budget = max(self.min_budget, self.token_budget // 2)

    def observe(self, seconds: float) -> None:
        if seconds < self.latency_target / 2 and self.token_budget * 2 <= self.max_budget:
            self.token_budget *= 2


def batch_policy(settings: BackendSettings) -> BatchPolicy:
    return BatchPolicy(token_budget=settings.token_budget,
                       max_budget=max(settings.token_budget, settings.max_token_budget))


def _truncate(ids: Sequence[int], limit: int) -> tuple[list[int], int]:
    """Drop tokens from the left, as lm-evaluation-harness does."""
    if len(ids) <= limit:
        return list(ids), 0
    return list(ids[len(ids) - limit:]), len(ids) - limit


def score_rows(requests: Sequence[ScoreRequest], max_context: int
               ) -> tuple[list[list[int]], list[int], list[tuple[int, int | None]], list[int]]:
    """The rows a shared scoring pass runs: (token ids, logits wanted at its last n positions, its
    (request, continuation) or (request, None) for all single-token continuations at once, and each
    request's tokens dropped from the left)."""
    rows: list[list[int]] = []
    wanted: list[int] = []
    owners: list[tuple[int, int | None]] = []
    truncated = [0] * len(requests)
    for r_index, request in enumerate(requests):
        if all(len(c) == 1 for c in request.continuations):
            ids, truncated[r_index] = _truncate(request.prompt_ids, max_context)
            rows.append(ids)
            wanted.append(1)
            owners.append((r_index, None))
            continue
        for o_index, continuation in enumerate(request.continuations):
            whole, dropped = _truncate(list(request.prompt_ids) + list(continuation), max_context + 1)
            truncated[r_index] = max(truncated[r_index], dropped)
            rows.append(whole[:-1])
            wanted.append(len(continuation))
            owners.append((r_index, o_index))
    return rows, wanted, owners, truncated


class Engine:
    def __init__(self, model: LogitsModel, policy: BatchPolicy | None = None, prefix_sharing: bool = True) -> None:
        self.model = model
        self.policy = policy or BatchPolicy()
        self.prefix_sharing = prefix_sharing
        self.work = {mode: TokenWork() for mode in WORK_MODES}

    # -- scoring --------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if self.prefix_sharing:
            return self._score_shared(requests)
        results: list[ScoreResult | None] = [None] * len(requests)
        is_single = [all(len(c) == 1 for c in r.continuations) for r in requests]
        single = [i for i, flag in enumerate(is_single) if flag]
        multi = [i for i, flag in enumerate(is_single) if not flag]
        self._score_single_token([requests[i] for i in single], single, results)
        self._score_multi_token([requests[i] for i in multi], multi, results)
        return [result for result in results if result is not None]

    def _score_single_token(self, requests: Sequence[ScoreRequest], slots: Sequence[int],
                            results: list[ScoreResult | None]) -> None:
        """One forward pass per prompt: the next-token distribution scores every label at once."""
        limit = self.model.max_context
        prompts = [_truncate(r.prompt_ids, limit) for r in requests]
        lengths = [len(ids) for ids, _ in prompts]
        self._count_unshared("loglik", lengths)
        def forward(batch: list[int]) -> np.ndarray:
            ids, mask = left_pad([prompts[i][0] for i in batch], self.model.pad_id)
            index = np.full((len(batch), 1), ids.shape[1] - 1, dtype=np.int64)
            return self.model.logits_at(ids, mask, index)

        for batch, logits in self._map_batches(lengths, forward):
            logprobs = log_softmax(logits[:, 0, :])
            for row, i in enumerate(batch):
                chosen = [float(logprobs[row, c[0]]) for c in requests[i].continuations]
                results[slots[i]] = ScoreResult(tuple(chosen), prompts[i][1], not np.all(np.isfinite(chosen)))

    def _score_multi_token(self, requests: Sequence[ScoreRequest], slots: Sequence[int],
                           results: list[ScoreResult | None]) -> None:
        """Each continuation scored on prompt+continuation; logits only where continuation tokens are."""
        limit = self.model.max_context + 1
        rows: list[tuple[list[int], int, int, int]] = []  # (input ids, n continuation, request, option)
        truncated = [0] * len(requests)
        for r_index, request in enumerate(requests):
            for o_index, continuation in enumerate(request.continuations):
                whole, dropped = _truncate(list(request.prompt_ids) + list(continuation), limit)
                truncated[r_index] = max(truncated[r_index], dropped)
                rows.append((whole[:-1], len(continuation), r_index, o_index))
        sums = [[0.0] * len(r.continuations) for r in requests]
        lengths = [len(row[0]) for row in rows]
        self._count_unshared("loglik", lengths)
        def forward(batch: list[int]) -> np.ndarray:
            ids, mask = left_pad([rows[i][0] for i in batch], self.model.pad_id)
            width = ids.shape[1]
            index = np.zeros((len(batch), max(rows[i][1] for i in batch)), dtype=np.int64)
            for b, i in enumerate(batch):
                n = rows[i][1]
                index[b, :n] = np.arange(width - n, width)
            return self.model.logits_at(ids, mask, index)

        for batch, logits in self._map_batches(lengths, forward):
            logprobs = log_softmax(logits)
            for b, i in enumerate(batch):
                _, n, r_index, o_index = rows[i]
                targets = requests[r_index].continuations[o_index]
                sums[r_index][o_index] = float(sum(logprobs[b, j, targets[j]] for j in range(n)))
        for r_index in range(len(requests)):
            values = tuple(sums[r_index])
            results[slots[r_index]] = ScoreResult(values, truncated[r_index], not np.all(np.isfinite(values)))

    def _count_unshared(self, mode: str, lengths: Sequence[int]) -> None:
        self.work[mode].presented += sum(lengths)
        self.work[mode].computed += sum(lengths)

    def _score_shared(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Every request's rows (a prompt; or prompt + continuation for multi-token ones) through their
        shared prefixes: a single-token request reads all labels at its prompt's last position."""
        rows, wanted, owners, truncated = score_rows(requests, self.model.max_context)
        sums = [[0.0] * len(r.continuations) for r in requests]

        def take(row: int, logprobs: np.ndarray) -> None:
            r_index, o_index = owners[row]
            continuations = requests[r_index].continuations
            if o_index is None:
                for k, continuation in enumerate(continuations):
                    sums[r_index][k] = float(logprobs[0, continuation[0]])
            else:
                targets = continuations[o_index]
                sums[r_index][o_index] = float(sum(logprobs[j, targets[j]] for j in range(len(targets))))

        self._run_shared_rows(rows, wanted, take)
        return [ScoreResult(tuple(values), dropped, not np.all(np.isfinite(values)))
                for values, dropped in zip(sums, truncated)]

    def _run_shared_rows(self, rows: Sequence[list[int]], wanted: Sequence[int],
                         take: Callable[[int, np.ndarray], None]) -> None:
        """Log-probabilities [wanted, V] at each row's last `wanted` positions, handed to `take` by row."""
        work = self.work["loglik"]
        work.presented += sum(len(row) for row in rows)
        runner = PrefixRunner(self.model, self._map_batches)
        for window in runner.windows(rows):
            local = [rows[i] for i in window]
            plan, states = runner.shared_states(local, [rows[i][:len(rows[i]) - wanted[i]] for i in window], work)
            segments = []
            for k, i in enumerate(window):
                own = local[k][plan.row_start[k]:]
                segments.append(Segment(plan.row_parent[k], own, tuple(range(len(own) - wanted[i], len(own)))))
            work.computed += sum(len(s.tokens) for s in segments)
            for batch, extended in runner.run_segments(segments, states, keep_states=False):
                logprobs = log_softmax(extended.logits)
                for b, k in enumerate(batch):
                    take(window[k], logprobs[b])

    # -- generation -------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest], eos_ids: frozenset[int],
                 stop: StopRule) -> list[GenerateResult]:
        results: list[GenerateResult | None] = [None] * len(requests)
        prompts = []
        for request in requests:
            limit = max(1, self.model.max_context - request.max_new_tokens)
            prompts.append(_truncate(request.prompt_ids, limit))
        if self.prefix_sharing:
            return self._generate_shared(requests, prompts, eos_ids, stop)
        lengths = [len(ids) for ids, _ in prompts]
        self._count_unshared("generate", lengths)
        def decode(batch: list[int]) -> list[Decoded]:
            return self._greedy([prompts[i][0] for i in batch], [requests[i].max_new_tokens for i in batch],
                                eos_ids, stop)

        for batch, outputs in self._map_batches(lengths, decode):
            for (tokens, reason, non_finite), i in zip(outputs, batch):
                results[i] = GenerateResult(tuple(tokens), reason, prompts[i][1], non_finite)
        return [result for result in results if result is not None]

    def _generate_shared(self, requests: Sequence[GenerateRequest], prompts: Sequence[tuple[list[int], int]],
                         eos_ids: frozenset[int], stop: StopRule) -> list[GenerateResult]:
        """Prefill through the shared prefixes; each decoding batch starts from its rows' own segments."""
        results: list[GenerateResult | None] = [None] * len(requests)
        rows = [ids for ids, _ in prompts]
        work = self.work["generate"]
        work.presented += sum(len(row) for row in rows)
        runner = PrefixRunner(self.model, self._map_batches)
        for window in runner.windows(rows):
            local = [rows[i] for i in window]
            plan, states = runner.shared_states(local, [row[:-1] for row in local], work)
            segments = []
            for k, row in enumerate(local):
                own = row[plan.row_start[k]:]
                segments.append(Segment(plan.row_parent[k], own, (len(own) - 1,)))
            work.computed += sum(len(s.tokens) for s in segments)

            def decode(batch: list[int]) -> list[Decoded]:
                extended = runner.extend([segments[k] for k in batch], states)
                arrays, mask = left_aligned_states(extended.present, extended.mask)
                return self._decode(extended.logits[:, 0, :], self.model.decoding_state(arrays), mask,
                                    [requests[window[k]].max_new_tokens for k in batch], eos_ids, stop)

            for batch, outputs in runner.map_segments(segments, states, decode):
                for (tokens, reason, non_finite), k in zip(outputs, batch):
                    results[window[k]] = GenerateResult(tuple(tokens), reason, prompts[window[k]][1], non_finite)
        return [result for result in results if result is not None]

    def _greedy(self, prompts: list[list[int]], budgets: list[int], eos_ids: frozenset[int],
                stop: StopRule) -> list[Decoded]:
        ids, mask = left_pad(prompts, self.model.pad_id)
        logits, state = self.model.start(ids, mask)
        return self._decode(logits, state, mask, budgets, eos_ids, stop)

    def _decode(self, logits: np.ndarray, state: Any, mask: np.ndarray, budgets: list[int], eos_ids: frozenset[int],
                stop: StopRule) -> list[Decoded]:
        """Greedy decoding from a prefill's last-position `logits` [B, V], its `state` and `mask` [B, T]."""
        count = len(budgets)
        generated: list[list[int]] = [[] for _ in range(count)]
        reasons: list[str | None] = [None] * count
        non_finite = [False] * count
        for step in range(max(budgets)):
            as_float = logits.astype(np.float32, copy=False)
            next_ids = np.argmax(as_float, axis=-1)
            # NaN anywhere makes a row's maximum NaN; argmax alone would pick token 0 and go on.
            finite = np.isfinite(as_float.max(axis=-1)).tolist()
            for row, token in enumerate(next_ids.tolist()):
                if reasons[row] is not None:
                    continue
                if not finite[row]:
                    non_finite[row], reasons[row] = True, "non_finite"
                    continue
                if token in eos_ids:
                    reasons[row] = "eos"
                    continue
                generated[row].append(token)
                if stop(generated[row]):
                    reasons[row] = "stop"
                elif len(generated[row]) >= budgets[row]:
                    reasons[row] = "length"
            if all(reason is not None for reason in reasons) or step == max(budgets) - 1:
                break
            feed = np.array([self.model.pad_id if reasons[r] else t for r, t in enumerate(next_ids.tolist())],
                            dtype=np.int64)
            mask = np.concatenate([mask, np.ones((count, 1), dtype=np.int64)], axis=1)
            logits, state = self.model.step(state, feed, mask)
        return [(tokens, reason or "length", bad) for tokens, reason, bad in zip(generated, reasons, non_finite)]

    # -- batching ---------------------------------------------------------------------------------

    def _map_batches(self, lengths: Sequence[int], run: Callable[[list[int]], Any],
                     padded: Callable[[list[int]], int] | None = None) -> Iterator[tuple[list[int], Any]]:
        """Length-sorted batches (longest first, so memory errors surface early), sized by the policy;
        on out-of-memory the policy shrinks and the failed batch is split and retried."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        position = 0
        retry: deque[list[int]] = deque()
        while retry or position < len(order):
            if retry:
                batch = retry.popleft()
            else:
                batch = next_batch(order, position, lengths, self.policy.token_budget, self.policy.max_batch,
                                   padded)
                position += len(batch)
            started = time.perf_counter()
            try:
                output = run(batch)
            except Exception as error:  # noqa: BLE001 - each runtime raises its own OOM type
                if not is_out_of_memory(error) or len(batch) == 1:
                    raise
                self.policy.shrink()
                middle = len(batch) // 2
                retry.appendleft(batch[middle:])
                retry.appendleft(batch[:middle])
                continue
            self.policy.observe(time.perf_counter() - started)
            yield batch, output


class EngineBackend:
    """A backend whose model is a LogitsModel: everything but the model is the shared Engine."""

    info: BackendInfo
    engine: Engine

    @property
    def work(self) -> dict[str, TokenWork]:
        """Prompt tokens presented and computed so far, by mode (see prefix_runner.TokenWork)."""
        return self.engine.work

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return self.engine.score(requests)

    def generate(self, requests: Sequence[GenerateRequest], eos_ids: frozenset[int],
                 stop: StopRule) -> list[GenerateResult]:
        return self.engine.generate(requests, eos_ids, stop)

    def close(self) -> None:
        """Release the model (an ONNX Runtime session, or torch weights) held by this backend."""
        self.__dict__.pop("engine", None)
        self.__dict__.pop("model", None)
