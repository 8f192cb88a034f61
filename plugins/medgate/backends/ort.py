"""ONNX Runtime backend: a rewritten Optimum export run with IO binding (CPU or CUDA).

Imports only numpy and onnxruntime, so a GPU box running an already exported model needs neither
torch nor transformers. The execution provider actually used is checked: asking for CUDA and
getting CPU is an error, never a silently slow run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgate.backends.base import (
    BackendInfo,
    BackendUnavailable,
)
from medgate.backends.engine import Engine, EngineBackend, batch_policy, positions_from_mask
from medgate.backends.graph import LOGITS_INDEX
from medgate.backends.settings import BackendSettings

_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(bfloat16)": np.float32}


class OrtLogitsModel:
    def __init__(self, onnx_dir: Path, device: str, threads: int | None, gpu_mem_limit: int | None,
                 device_id: int, pad_id: int, max_context: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise BackendUnavailable(
                "the onnxruntime backend needs onnxruntime: pip install -e '.[cpu]' "
                "(or '.[gpu]' for onnxruntime-gpu on a CUDA machine)"
            ) from error
        self.pad_id = pad_id
        self.max_context = max_context
        self.device = device
        self.device_id = device_id
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # Workers sharing cores must not spin-wait on each other's cores; one worker owning them
            # all may (a few percent faster on SmolLM2 here).
            spinning = "1" if threads >= (os.cpu_count() or 1) else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        providers: list[Any]
        if device == "cuda":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailable(
                    f"--device cuda needs onnxruntime-gpu with the CUDA provider; this onnxruntime offers {available}"
                )
            cuda_options: dict[str, Any] = {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}
            if gpu_mem_limit:
                cuda_options["gpu_mem_limit"] = gpu_mem_limit
            providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(onnx_dir / "model.onnx"), options, providers=providers)
        used = self.session.get_providers()
        wanted = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        if used[0] != wanted:
            raise BackendUnavailable(f"asked for {wanted} but onnxruntime used {used}: refusing a silent fallback")
        self.execution_provider = used[0]
        self.ort_version = ort.__version__
        inputs = {meta.name: meta for meta in self.session.get_inputs()}
        if LOGITS_INDEX not in inputs:
            raise BackendUnavailable(f"{onnx_dir}/model.onnx was not prepared by medgate (no {LOGITS_INDEX} input)")
        self.past_names = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_order)
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        self.uses_position_ids = "position_ids" in inputs
        self.past_shape: dict[str, tuple[int, int]] = {}
        self.kv_dtype: Any = np.float32
        for name in self.past_names:
            shape = inputs[name].shape  # [batch, kv_heads, past, head_dim]
            self.past_shape[name] = (int(shape[1]), int(shape[3]))
            self.kv_dtype = _NUMPY_DTYPES.get(inputs[name].type, np.float32)
        self.kv_bytes_per_token = sum(heads * width for heads, width in self.past_shape.values()) * \
            np.dtype(self.kv_dtype).itemsize

    def _run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, index: np.ndarray,
             past: Sequence[Any] | None, want_present: bool, host_present: bool = False) -> tuple[np.ndarray, list[Any]]:
        """`past`: OrtValues from an earlier run, or host arrays (copied to the device where it is CUDA);
        `host_present`: the new states come back to the host (for reuse by other rows) instead of
        staying on the device for the next decoding step."""
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.uses_position_ids:
            binding.bind_cpu_input("position_ids", positions)
        binding.bind_cpu_input(LOGITS_INDEX, index)
        for i, name in enumerate(self.past_names):
            if past is None:
                heads, width = self.past_shape[name]
                binding.bind_cpu_input(name, np.zeros((ids.shape[0], heads, 0, width), dtype=self.kv_dtype))
            elif isinstance(past[i], np.ndarray):
                binding.bind_cpu_input(name, past[i])
            else:
                binding.bind_ortvalue_input(name, past[i])
        binding.bind_output("logits", "cpu")
        kv_device = "cuda" if self.device == "cuda" and not host_present else "cpu"
        for name in self.present_names:  # computed either way; kept on the device for the next step
            binding.bind_output(name, kv_device, self.device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), list(outputs[1:]) if want_present else []

    def logits_at(self, ids: np.ndarray, mask: np.ndarray, index: np.ndarray) -> np.ndarray:
        logits, _ = self._run(ids, mask, positions_from_mask(mask), index, None, want_present=False)
        return logits

    def start(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        index = np.full((ids.shape[0], 1), ids.shape[1] - 1, dtype=np.int64)
        logits, present = self._run(ids, mask, positions_from_mask(mask), index, None, want_present=True)
        return logits[:, 0, :], present

    def step(self, state: Any, next_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        positions = (mask.sum(axis=1, keepdims=True) - 1).astype(np.int64)
        index = np.zeros((next_ids.shape[0], 1), dtype=np.int64)
        logits, present = self._run(next_ids[:, None], mask, positions, index, state, want_present=True)
        return logits[:, 0, :], present

    def extend(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray] | None,
               index: np.ndarray, keep_states: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        positions = positions_from_mask(mask)[:, mask.shape[1] - ids.shape[1]:]
        logits, present = self._run(ids, mask, np.ascontiguousarray(positions), index, past,
                                    want_present=keep_states, host_present=True)
        return logits, [value.numpy() for value in present]

    def decoding_state(self, past: list[np.ndarray]) -> Any:
        return list(past)  # bound as host inputs by the first step; its outputs stay on the device


def _layer_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return int(parts[1]), parts[2]


class OrtBackend(EngineBackend):
    def __init__(self, settings: BackendSettings, onnx_dir: Path, pad_id: int) -> None:
        config = json.loads((onnx_dir / "config.json").read_text())
        export = json.loads((onnx_dir / "medgate_export.json").read_text())
        context = int(config.get("max_position_embeddings") or 2048)
        self.model = OrtLogitsModel(onnx_dir, settings.device, settings.threads, settings.gpu_mem_limit,
                                    settings.device_id, pad_id, min(context, settings.max_context or context))
        self.engine = Engine(self.model, batch_policy(settings), settings.prefix_sharing)
        self.info = BackendInfo(
            name="onnxruntime",
            device=f"cuda:{settings.device_id}" if settings.device == "cuda" else "cpu",
            execution_provider=self.model.execution_provider,
            dtype=export.get("dtype", "fp32"),
            max_context=self.model.max_context,
            details={"onnxruntime": self.model.ort_version, "onnx_dir": str(onnx_dir),
                     "intra_op_threads": settings.threads, "export": export},
        )
