"""Batched scoring and greedy decoding on top of a minimal logits interface.

Both backends implement `LogitsModel` (three array functions); this module owns everything else:
left truncation, length-sorted batches with left padding, the single-forward path when every
continuation is one token, fp32 log-softmax, non-finite detection, KV-cache greedy decoding with
early stop, out-of-memory back-off, and restoring the caller's order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from medgate.backends.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, StopRule


class LogitsModel(Protocol):
    max_context: int
    pad_id: int

    def logits_at(self, ids: np.ndarray, mask: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Logits [B, K, V] (any float dtype) at positions `index` [B, K] of left-padded `ids` [B, T]."""

    def start(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        """Prefill: logits [B, V] at the last position and a decoding state."""

    def step(self, state: Any, next_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        """One decoding step: logits [B, V] for `next_ids` [B] with `mask` [B, T+1], new state."""


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


def length_batches(lengths: Sequence[int], token_budget: int, max_batch: int) -> Iterator[list[int]]:
    """Indices grouped longest first, each batch within `token_budget` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        width = lengths[batch[0]] if batch else lengths[index]
        if batch and (len(batch) + 1) * width > token_budget or len(batch) >= max_batch:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


@dataclass
class BatchPolicy:
    """Padded tokens per forward pass; halved on out-of-memory and remembered."""

    token_budget: int = 8192
    max_batch: int = 256
    min_budget: int = 64

    def shrink(self) -> bool:
        if self.token_budget <= self.min_budget:
            return False
        self.token_budget = max(self.min_budget, self.token_budget // 2)
        return True


def _truncate(ids: Sequence[int], limit: int) -> tuple[list[int], int]:
    """Drop tokens from the left, as lm-evaluation-harness does."""
    if len(ids) <= limit:
        return list(ids), 0
    return list(ids[len(ids) - limit:]), len(ids) - limit


class Engine:
    def __init__(self, model: LogitsModel, policy: BatchPolicy | None = None) -> None:
        self.model = model
        self.policy = policy or BatchPolicy()

    # -- scoring --------------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
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

    # -- generation -------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest], eos_ids: frozenset[int],
                 stop: StopRule) -> list[GenerateResult]:
        results: list[GenerateResult | None] = [None] * len(requests)
        prompts = []
        for request in requests:
            limit = max(1, self.model.max_context - request.max_new_tokens)
            prompts.append(_truncate(request.prompt_ids, limit))
        lengths = [len(ids) for ids, _ in prompts]
        def decode(batch: list[int]) -> list[tuple[list[int], str]]:
            return self._greedy([prompts[i][0] for i in batch], [requests[i].max_new_tokens for i in batch],
                                eos_ids, stop)

        for batch, outputs in self._map_batches(lengths, decode):
            for (tokens, reason), i in zip(outputs, batch):
                results[i] = GenerateResult(tuple(tokens), reason, prompts[i][1])
        return [result for result in results if result is not None]

    def _greedy(self, prompts: list[list[int]], budgets: list[int], eos_ids: frozenset[int],
                stop: StopRule) -> list[tuple[list[int], str]]:
        ids, mask = left_pad(prompts, self.model.pad_id)
        logits, state = self.model.start(ids, mask)
        generated: list[list[int]] = [[] for _ in prompts]
        reasons: list[str | None] = [None] * len(prompts)
        for step in range(max(budgets)):
            next_ids = np.argmax(logits.astype(np.float32, copy=False), axis=-1)
            for row, token in enumerate(next_ids.tolist()):
                if reasons[row] is not None:
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
            mask = np.concatenate([mask, np.ones((len(prompts), 1), dtype=np.int64)], axis=1)
            logits, state = self.model.step(state, feed, mask)
        return [(tokens, reason or "length") for tokens, reason in zip(generated, reasons)]

    # -- batching ---------------------------------------------------------------------------------

    def _map_batches(self, lengths: Sequence[int],
                     run: Callable[[list[int]], Any]) -> Iterator[tuple[list[int], Any]]:
        """Run each length-sorted batch; on out-of-memory halve the budget and split the batch."""
        queue = deque(length_batches(lengths, self.policy.token_budget, self.policy.max_batch))
        while queue:
            batch = queue.popleft()
            try:
                output = run(batch)
            except Exception as error:  # noqa: BLE001 - each runtime raises its own OOM type
                if not is_out_of_memory(error) or len(batch) == 1:
                    raise
                self.policy.shrink()
                middle = len(batch) // 2
                queue.appendleft(batch[middle:])
                queue.appendleft(batch[:middle])
                continue
            yield batch, output
