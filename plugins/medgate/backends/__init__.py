"""Backends, constructed lazily: heavy imports happen only for the backend selected.

`onnxruntime` (default): the checkpoint exported once through Optimum, run by ONNX Runtime.
`torch`: the same checkpoint in transformers, the reference for parity checks.
`openai`: an OpenAI-compatible server (vLLM first), fed token ids encoded here (backends/openai.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medgate.backends.base import Backend, BackendInfo, BackendUnavailable
from medgate.backends.settings import BackendSettings

BACKENDS = ("onnxruntime", "torch", "openai")
IN_PROCESS_BACKENDS = ("onnxruntime", "torch")

__all__ = ["BACKENDS", "Backend", "BackendInfo", "BackendSettings", "BackendUnavailable", "create_backend",
           "cuda_available", "cuda_refusal", "cuda_unavailable_reason"]


def create_backend(settings: BackendSettings, checkpoint: Path, fingerprint: str, pad_id: int) -> Backend:
    if settings.name == "openai":
        from medgate.backends.openai import OpenAIBackend  # standard library only: no numpy, no runtime
        from medgate.tokenization import TextTokenizer

        if settings.server is None:
            raise BackendUnavailable("--backend openai needs --base-url")
        return OpenAIBackend(settings.server, checkpoint, TextTokenizer(checkpoint), settings.max_context)
    # numpy and the runtime are imported only when a model runs
    if settings.name == "onnxruntime":
        from medgate.backends.export import ensure_export
        from medgate.backends.ort import OrtBackend

        return OrtBackend(settings, ensure_export(checkpoint, fingerprint, settings.device, settings.dtype), pad_id)
    if settings.name == "torch":
        from medgate.backends.torch_backend import TorchBackend

        return TorchBackend(settings, checkpoint, pad_id)
    raise BackendUnavailable(f"unknown backend {settings.name!r}; choose one of {', '.join(BACKENDS)}")


def cuda_unavailable_reason(backend: str) -> str | None:
    """Why `backend` cannot run on CUDA here (None if it can), asked before any case runs: without it
    every case would fail on its own, after a slow attempt to export or load the model."""
    if backend == "torch":
        try:
            import torch
        except ImportError:
            return "the torch backend needs torch with CUDA, and torch is not installed"
        if not torch.cuda.is_available():
            return f"this torch ({torch.__version__}) sees no CUDA device (a CPU build, or no GPU visible)"
        return None
    from importlib import metadata

    try:
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return ("ONNX Runtime needs onnxruntime-gpu, which is not installed here (only the CPU onnxruntime); "
                "on a CUDA machine: make setup EXTRAS=gpu,dev, or pip install -e '.[gpu]' in an environment "
                "without onnxruntime")
    try:
        import onnxruntime
    except ImportError as error:
        return f"onnxruntime-gpu is installed but does not import: {error}"
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return f"this onnxruntime offers {providers}, without CUDAExecutionProvider"
    return None


def cuda_refusal(backends: Sequence[str]) -> str | None:
    """The message refusing `--device cuda` when any of `backends` cannot run on CUDA here, else None."""
    reasons = [reason for backend in backends if (reason := cuda_unavailable_reason(backend))]
    return f"--device cuda: {'; '.join(reasons)}" if reasons else None


def cuda_available() -> bool:
    """Whether ONNX Runtime here offers CUDA (for `--device auto`), without importing torch.

    Only onnxruntime-gpu can; where it is not installed the answer needs no import (a fully cached
    run then never loads onnxruntime at all).
    """
    return cuda_unavailable_reason("onnxruntime") is None
