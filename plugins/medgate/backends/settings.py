"""What a backend is built from: one settings object (the run's options resolved for this worker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medgate.backends.openai import ServerSettings


@dataclass(frozen=True)
class BackendSettings:
    name: str = "onnxruntime"
    device: str = "cpu"  # "cpu" or "cuda" (already resolved from "auto")
    device_id: int = 0
    dtype: str = "fp32"
    threads: int | None = None
    token_budget: int = 8192  # the first batches' size; grows up to max_token_budget while fast
    max_token_budget: int = 8192
    gpu_mem_limit: int | None = None
    max_context: int | None = None
    server: ServerSettings | None = None  # --backend openai only
    prefix_sharing: bool = True  # run each shared token prefix of a call once (--no-prefix-sharing: off)
