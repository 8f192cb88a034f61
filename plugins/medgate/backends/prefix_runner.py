"""Running a model call through its shared prefixes (the plan of prefix_tree.py).

Rows are taken in windows of similar rows (sorted by their tokens, so the variants of one prompt
sit together), bounded so that the key/value states held for a window's kept nodes stay within
`KV_HOST_BYTES`. In each window the kept nodes run level by level, each from its parent's states;
then every row runs its own segment from its deepest kept node. Batches put the past on the left
(left-padded, masked) and the new tokens right after it (right-padded), so positions come from the
mask as everywhere else in the engine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medgate.backends.prefix_tree import PrefixPlan, plan_prefixes

# Key/value states kept on the host for one window's shared nodes (each node holds its whole prefix).
# One 64-case group of MedQA variants with SmolLM2 fits (its rows hold ~21k tokens at 46 KB): a
# group cut into two windows computes the stems at the cut twice and runs every level twice.
KV_HOST_BYTES = 1 << 30
MIN_WINDOW_TOKENS = 2048

# Runs `run` over batches of indices, longest first by the given lengths, each batch as large as its
# padded cost allows (the engine's _map_batches: budget, out-of-memory back-off).
BatchMapper = Callable[[Sequence[int], Callable[[list[int]], Any], Callable[[list[int]], int]],
                       Iterator[tuple[list[int], Any]]]


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
    present: list[np.ndarray]  # [B, heads, P + S, dim] per layer key / value (empty unless kept)
    mask: np.ndarray  # [B, P + S]


def padded_cost(new_width: int, past_width: int, rows: int) -> int:
    """A batch's size in budget units: its padded new tokens, or a quarter of its padded attended
    width when the past dominates (past and present states are copied whole each pass, and the
    attention grows with their width). Half was tried: faster on one group of SmolLM2 on MedQA
    variants, slower on the whole 576-case benchmark, within this VM's noise."""
    return rows * max(new_width, (past_width + new_width) // 4, 1)


# How far a batch may pad its rows. Own segments: half their width again (twice was 2-3% slower on
# the 576-case SmolLM2 benchmark: a tenth of the tokens computed were padding). The past: a quarter
# of its width, where it is longer than SHORT_PAST (a padded past costs attention, the host copy
# and ONNX Runtime's Concat of every layer; a short one costs little, and binding it saves a pass).
NEW_PADDING = 1.5
PAST_PADDING = 1.25
SHORT_PAST = 64


def within_padding(narrowest: int, widest: int, narrowest_past: int, widest_past: int) -> bool:
    """Whether a batch of own segments and pasts of these extremes pads no row beyond the limits."""
    if widest > NEW_PADDING * narrowest:
        return False
    return widest_past <= SHORT_PAST or widest_past <= PAST_PADDING * narrowest_past


class PrefixRunner:
    def __init__(self, model: Any, map_batches: BatchMapper) -> None:
        self.model = model
        self.map_batches = map_batches
        self.past_buffer = PastBuffer()

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
            for batch, extended in self.run_segments(segments, states, keep_states=True):
                for b, position in enumerate(batch):
                    states[nodes[position]] = compact_row(extended.present, extended.mask, b)
            work.computed += sum(len(s.tokens) for s in segments)
        return plan, states

    # -- forward passes -----------------------------------------------------------------------------

    def map_segments(self, segments: Sequence[Segment], states: dict[int, list[np.ndarray]],
                     run: Callable[[list[int]], Any]) -> Iterator[tuple[list[int], Any]]:
        """`run` over batches of segment indices, longest own segment first. A batch's cost is its
        widest own segment and widest past, each bounded by `within_padding`: one mixed cost put
        short segments with long pasts beside whole prompts (a prompt the variants share nothing
        with), padded to the prompts' width, and that padding was over half of one SmolLM2
        group's time."""
        new = [len(s.tokens) for s in segments]
        past = [_past_length(states, s.parent) for s in segments]

        def padded(batch: list[int]) -> int:
            widest, widest_past = max(new[i] for i in batch), max(past[i] for i in batch)
            if not within_padding(min(new[i] for i in batch), widest, min(past[i] for i in batch), widest_past):
                return sys.maxsize
            return padded_cost(widest, widest_past, len(batch))

        yield from self.map_batches(new, run, padded)

    def run_segments(self, segments: Sequence[Segment], states: dict[int, list[np.ndarray]],
                     keep_states: bool) -> Iterator[tuple[list[int], Extended]]:
        yield from self.map_segments(
            segments, states, lambda batch: self.extend([segments[i] for i in batch], states, keep_states))

    def extend(self, segments: Sequence[Segment], states: dict[int, list[np.ndarray]],
               keep_states: bool = True) -> Extended:
        """One forward pass of `segments` after their parents' states (`keep_states`: return the new
        states too; a scoring leaf needs only its logits, and copying the states out costs as much
        as copying them in)."""
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
            past = self.past_buffer.layers([(len(segments), a.shape[0], width_past, a.shape[2]) for a in template],
                                           template[0].dtype)
            for b, (segment, past_length) in enumerate(zip(segments, past_lengths)):
                pad = width_past - past_length
                for layer, array in zip(past, [] if segment.parent is None else states[segment.parent]):
                    layer[b, :, pad:, :] = array
                for layer in past:
                    layer[b, :, :pad, :] = 0  # masked, but must be finite: the buffer holds earlier passes
        logits, present = self.model.extend(ids, mask, past, index, keep_states)
        return Extended(logits, present, mask)


class PastBuffer:
    """One host buffer reused for every pass's past: a fresh array of hundreds of megabytes per pass
    paid its page faults again each time."""

    def __init__(self) -> None:
        self.memory = np.empty(0, dtype=np.uint8)

    def layers(self, shapes: Sequence[tuple[int, int, int, int]], dtype: Any) -> list[np.ndarray]:
        """Contiguous arrays of `shapes`, one after another in the buffer (contents left as they were)."""
        itemsize = np.dtype(dtype).itemsize
        sizes = [int(np.prod(shape)) for shape in shapes]
        if self.memory.nbytes < sum(sizes) * itemsize:
            self.memory = np.empty(sum(sizes) * itemsize, dtype=np.uint8)
        flat = self.memory[:sum(sizes) * itemsize].view(dtype)
        offsets = np.cumsum([0, *sizes])
        return [flat[start:end].reshape(shape) for start, end, shape in zip(offsets[:-1], offsets[1:], shapes)]


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
