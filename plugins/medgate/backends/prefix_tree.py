"""Which token prefixes of a model call to compute once, and from where each row continues.

Every row of a call (a prompt, or a prompt followed by part of a continuation) has a shareable
head (the tokens before the first position whose logits it needs) and a tail. The heads form a
compressed prefix tree; a tree node is computed on its own ("kept") only where that pays: its
tokens, counted from the nearest kept ancestor, times the rows below it beyond the first, must
reach `min_saved` tokens. A short common opening is not worth a separate pass and stays in the
rows' own segments. Each row then runs its tail (and whatever of its head no kept node covers)
from the key/value states of its deepest kept node.

Pure Python over token ids: the engine runs the plan (engine.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A kept node costs one more row in some forward pass and a copy of its key/value states; below
# this many tokens saved the copies cost about what the sharing saves.
MIN_SAVED_TOKENS = 32


@dataclass(frozen=True)
class SharedNode:
    """A prefix computed once: tokens [start, end) of `row`'s head, continuing from `parent`."""

    parent: int | None  # index of the kept node it continues from (None: from the start)
    row: int  # a row whose head holds these tokens
    start: int
    end: int
    level: int  # 0 for nodes without a kept ancestor; parents are always one level up


@dataclass(frozen=True)
class PrefixPlan:
    nodes: list[SharedNode]  # kept nodes, parents before children
    row_parent: list[int | None]  # each row's deepest kept node (None: the row runs whole)
    row_start: list[int]  # where each row's own segment begins (the end of its parent node, or 0)

    def computed_tokens(self, lengths: Sequence[int]) -> int:
        """Tokens that the plan runs: every kept node once, and each row's own segment."""
        return sum(n.end - n.start for n in self.nodes) + sum(
            length - start for length, start in zip(lengths, self.row_start))

    @property
    def levels(self) -> int:
        return 1 + max((n.level for n in self.nodes), default=-1)


def plan_prefixes(heads: Sequence[Sequence[int]], min_saved: int = MIN_SAVED_TOKENS) -> PrefixPlan:
    """The kept nodes over the rows' shareable `heads` (each row's tokens before its first wanted logit)."""
    nodes: list[SharedNode] = []
    row_parent: list[int | None] = [None] * len(heads)
    row_start = [0] * len(heads)
    # Iterative depth-first walk: (members, depth the members agree up to, kept ancestor, its end, its level).
    stack: list[tuple[list[int], int, int | None, int, int]] = [(list(range(len(heads))), 0, None, 0, 0)]
    while stack:
        members, depth, parent, parent_end, level = stack.pop()
        if len(members) < 2:
            for row in members:
                row_parent[row], row_start[row] = parent, parent_end
            continue
        end = _common_extent(heads, members, depth)
        kept_parent, kept_end, next_level = parent, parent_end, level
        if (end - parent_end) * (len(members) - 1) >= min_saved and end > parent_end:
            nodes.append(SharedNode(parent, members[0], parent_end, end, level))
            kept_parent, kept_end, next_level = len(nodes) - 1, end, level + 1
        branches: dict[int, list[int]] = {}
        for row in members:
            if len(heads[row]) == end:  # the head ends here: the row continues from this node
                row_parent[row], row_start[row] = kept_parent, kept_end
            else:
                branches.setdefault(heads[row][end], []).append(row)
        for branch in reversed(list(branches.values())):
            stack.append((branch, end + 1, kept_parent, kept_end, next_level))
    return PrefixPlan(nodes, row_parent, row_start)


def _common_extent(heads: Sequence[Sequence[int]], members: Sequence[int], depth: int) -> int:
    """How far past `depth` every member's head agrees (members already agree before `depth`)."""
    first = heads[members[0]]
    limit = min(len(heads[row]) for row in members)
    end = depth
    while end < limit:
        token = first[end]
        if any(heads[row][end] != token for row in members):
            break
        end += 1
    return end
