"""The backend protocol: token-level, list in, list out (the lm-evaluation-harness shape).

Backends receive every request of a group at once, batch and sort them themselves and return
results in the order given. Tokenization happens before, once, in `medgate.scoring`, so the ONNX
Runtime and torch backends see identical ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ScoreRequest:
    prompt_ids: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ScoreResult:
    logprobs: tuple[float, ...]  # summed log-probability of each continuation
    truncated_tokens: int = 0  # prompt tokens dropped from the left to fit the context
    non_finite: bool = False  # a NaN or inf appeared in the scores


@dataclass(frozen=True)
class GenerateRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int


@dataclass(frozen=True)
class GenerateResult:
    token_ids: tuple[int, ...]
    stop_reason: str  # "eos", "stop" (the caller's stop rule) or "length"
    truncated_tokens: int = 0
    non_finite: bool = False  # a NaN or inf appeared in the logits a token was chosen from


# Called with the tokens generated so far for one request; True ends that request.
StopRule = Callable[[Sequence[int]], bool]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    execution_provider: str
    dtype: str
    max_context: int
    details: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    info: BackendInfo

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]: ...

    def generate(self, requests: Sequence[GenerateRequest], eos_ids: frozenset[int],
                 stop: StopRule) -> list[GenerateResult]: ...

    def close(self) -> None: ...


class BackendUnavailable(RuntimeError):
    """A backend's optional dependency is missing or its device cannot be used."""
