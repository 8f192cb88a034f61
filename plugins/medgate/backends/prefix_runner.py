"""Running a model call through its shared prefixes (the plan of prefix_tree.py).

Rows are taken in windows of similar rows (sorted by their tokens, so the variants of one prompt
sit together), bounded so that the key/value states held for a window's kept nodes stay within
`KV_HOST_BYTES`. In each window the kept nodes run level by level, each from its parent's states;
then every row runs its own segment from its deepest kept node. Batches put the past on the left
(left-padded, masked) and the new tokens right after it (right-padded), so positions come from the
mask as everywhere else in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medgate.backends.prefix_tree import PrefixPlan, plan_prefixes

# Key/value states kept on the host for one window's shared nodes (each node holds its whole prefix).
KV_HOST_BYTES = 512 << 20
MIN_WINDOW_TOKENS = 2048

# Runs `run` over batches of indices chosen by cost (the engine's _map_batches: budget, out-of-memory back-off).
BatchMapper = Callable[[Sequence[int], Callable[[list[int]], Any]], Iterator[tuple[list[int], Any]]]


@dataclass
class TokenWork:
    """Prompt tokens a call presented (what running every row whole computes) and those actually run."""

    presented: int = 0
    computed: int = 0


@dataclass(frozen=True)
class Segment:
    """Tokens to run after the states of kept node `parent` (None: from the start)."""

    parent: int | None
    tokens: Sequence[int]
    wanted: Sequence[int]  # offsets in `tokens` whose logits are needed


@dataclass
class Extended:
    logits: np.ndarray  # [B, K, V] at each segment's wanted offsets (padded with offset 0)
    present: list[np.ndarray]  # [B, heads, P + S, dim] per layer key / value
    mask: np.ndarray  # [B, P + S]


def cost(segment: Segment, past_length: int) -> int:
    """Batch-size units: new tokens, or a quarter of the attended width when the past dominates (past
    and present states are copied whole each pass, and the attention grows with their width). Half
    was tried: faster on one group of SmolLM2 on MedQA variants (9.4 s against 11.1 s), slower on
    the whole 576-case benchmark (98.9 s in the model against 92.0 s), within this VM's noise."""
    return max(len(segment.tokens), (past_length + len(segment.tokens)) // 4, 1)


class PrefixRunner:
    def __init__(self, model: Any, map_batches: BatchMapper) -> None:
        self.model = model
        self.map_batches = map_batches

    # -- windows and plans ----------------------------------------------------------------------

    def windows(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """Row indices in token order, cut where a window's tokens would exceed what its states may hold."""
        per_token = max(1, int(getattr(self.model, "kv_bytes_per_token", 0)))
        limit = max(MIN_WINDOW_TOKENS, KV_HOST_BYTES // per_token)
        order = sorted(range(len(rows)), key=lambda i: tuple(rows[i]))
        windows: list[list[int]] = [[]]
        held = 0
        for index in order:
            if windows[-1] and held + len(rows[index]) > limit:
                windows.append([])
                held = 0
            windows[-1].append(index)
            held += len(rows[index])
        return [window for window in windows if window]

    def shared_states(self, rows: Sequence[Sequence[int]], heads: Sequence[Sequence[int]],
                      work: TokenWork) -> tuple[PrefixPlan, dict[int, list[np.ndarray]]]:
        """The plan over `heads` and every kept node's states (its whole prefix, compact)."""
        plan = plan_prefixes(heads)
        states: dict[int, list[np.ndarray]] = {}
        for level in range(plan.levels):
            nodes = [i for i, node in enumerate(plan.nodes) if node.level == level]
            segments = [Segment(plan.nodes[i].parent, rows[plan.nodes[i].row][plan.nodes[i].start:plan.nodes[i].end],
                                (0,)) for i in nodes]
            for batch, extended in self.run_segments(segments, states):
                for b, position in enumerate(batch):
                    states[nodes[position]] = compact_row(extended.present, extended.mask, b)
            work.computed += sum(len(s.tokens) for s in segments)
        return plan, states

    # -- forward passes -----------------------------------------------------------------------------

    def run_segments(self, segments: Sequence[Segment],
                     states: dict[int, list[np.ndarray]]) -> Iterator[tuple[list[int], Extended]]:
        lengths = [cost(s, _past_length(states, s.parent)) for s in segments]
        yield from self.map_batches(lengths, lambda batch: self.extend([segments[i] for i in batch], states))

    def extend(self, segments: Sequence[Segment], states: dict[int, list[np.ndarray]]) -> Extended:
        past_lengths = [_past_length(states, s.parent) for s in segments]
        width_past = max(past_lengths)
        width_new = max(len(s.tokens) for s in segments)
        ids = np.full((len(segments), width_new), self.model.pad_id, dtype=np.int64)
        mask = np.zeros((len(segments), width_past + width_new), dtype=np.int64)
        index = np.zeros((len(segments), max(len(s.wanted) for s in segments)), dtype=np.int64)
        for b, (segment, past_length) in enumerate(zip(segments, past_lengths)):
            ids[b, :len(segment.tokens)] = segment.tokens
            mask[b, width_past - past_length:width_past + len(segment.tokens)] = 1
            index[b, :len(segment.wanted)] = segment.wanted
        past = None
        if width_past:
            template = next(states[s.parent] for s in segments if s.parent is not None)
            past = [np.zeros((len(segments), a.shape[0], width_past, a.shape[2]), dtype=a.dtype) for a in template]
            for b, (segment, past_length) in enumerate(zip(segments, past_lengths)):
                if segment.parent is not None:
                    for layer, array in zip(past, states[segment.parent]):
                        layer[b, :, width_past - past_length:, :] = array
        logits, present = self.model.extend(ids, mask, past, index)
        return Extended(logits, present, mask)


def _past_length(states: dict[int, list[np.ndarray]], parent: int | None) -> int:
    return 0 if parent is None else int(states[parent][0].shape[1])


def compact_row(present: Sequence[np.ndarray], mask: np.ndarray, row: int) -> list[np.ndarray]:
    """Row `row`'s states without its padding: [heads, valid, dim] per layer key / value (a copy)."""
    valid = np.flatnonzero(mask[row])
    return [array[row][:, valid, :] for array in present]


def left_aligned_states(present: Sequence[np.ndarray], mask: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Batch states with each row's valid positions moved to the right end (the decoding layout)."""
    counts = mask.sum(axis=1)
    width = int(counts.max())
    states = [np.zeros((a.shape[0], a.shape[1], width, a.shape[3]), dtype=a.dtype) for a in present]
    aligned = np.zeros((mask.shape[0], width), dtype=np.int64)
    for b in range(mask.shape[0]):
        valid = np.flatnonzero(mask[b])
        for target, source in zip(states, present):
            target[b, :, width - len(valid):, :] = source[b][:, valid, :]
        aligned[b, width - len(valid):] = 1
    return states, aligned
