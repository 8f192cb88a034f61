"""transformers reference backend (`--backend torch`): the same checkpoint, run eagerly in torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medgate.backends.base import (
    BackendInfo,
    BackendUnavailable,
)
from medgate.backends.engine import Engine, EngineBackend, batch_policy, positions_from_mask
from medgate.backends.settings import BackendSettings
from medgate.checkpoint_files import CheckpointError, audit_checkpoint, read_checkpoint_json


class TorchLogitsModel:
    def __init__(self, checkpoint: Path, device: str, dtype: str, threads: int | None, pad_id: int,
                 max_context: int) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as error:
            raise BackendUnavailable(
                "the torch backend needs torch and transformers: pip install -e '.[cpu]'"
            ) from error
        if threads:
            torch.set_num_threads(threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda with --backend torch needs a CUDA build of torch and a GPU")
        self.torch = torch
        self.torch_dtype = torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self.device = torch.device(device)
        self.net = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch_dtype,
                                                        trust_remote_code=False)
        # transformers types `to` as a method of PreTrainedModel that mypy reads as taking the model.
        self.net = self.net.to(self.device).eval()  # type: ignore[arg-type]
        self.pad_id = pad_id
        self.max_context = max_context
        self.versions = {"torch": torch.__version__}
        config = self.net.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        # Host copies of the states are float32 whatever the model's dtype (numpy has no bfloat16).
        self.kv_bytes_per_token = int(config.num_hidden_layers) * 2 * int(kv_heads) * int(head_dim) * 4

    def _tensor(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def logits_at(self, ids: np.ndarray, mask: np.ndarray, index: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            output = self.net(input_ids=self._tensor(ids), attention_mask=self._tensor(mask),
                              position_ids=self._tensor(positions_from_mask(mask)), use_cache=False)
            gathered = output.logits[self.torch.arange(ids.shape[0])[:, None], self._tensor(index)]
            return gathered.float().cpu().numpy()

    def start(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        with self.torch.inference_mode():
            output = self.net(input_ids=self._tensor(ids), attention_mask=self._tensor(mask),
                              position_ids=self._tensor(positions_from_mask(mask)), use_cache=True)
            return output.logits[:, -1, :].float().cpu().numpy(), output.past_key_values

    def step(self, state: Any, next_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Any]:
        positions = (mask.sum(axis=1, keepdims=True) - 1).astype(np.int64)
        with self.torch.inference_mode():
            output = self.net(input_ids=self._tensor(next_ids[:, None]), attention_mask=self._tensor(mask),
                              position_ids=self._tensor(positions), past_key_values=state, use_cache=True)
            return output.logits[:, -1, :].float().cpu().numpy(), output.past_key_values

    def extend(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray] | None,
               index: np.ndarray, keep_states: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        positions = positions_from_mask(mask)[:, mask.shape[1] - ids.shape[1]:]
        cache = None if past is None else self.decoding_state(past)
        with self.torch.inference_mode():
            output = self.net(input_ids=self._tensor(ids), attention_mask=self._tensor(mask),
                              position_ids=self._tensor(positions), past_key_values=cache, use_cache=True)
            gathered = output.logits[self.torch.arange(ids.shape[0])[:, None], self._tensor(index)]
            present = [tensor.float().cpu().numpy() for pair in output.past_key_values.to_legacy_cache()
                       for tensor in pair] if keep_states else []
            return gathered.float().cpu().numpy(), present

    def decoding_state(self, past: list[np.ndarray]) -> Any:
        from transformers import DynamicCache

        tensors = [self._tensor(array).to(self.torch_dtype) for array in past]
        # transformers annotates the argument as a 1-tuple; it takes one (key, value) pair per layer.
        pairs: Any = tuple(zip(tensors[0::2], tensors[1::2]))
        return DynamicCache.from_legacy_cache(pairs)


class TorchBackend(EngineBackend):
    def __init__(self, settings: BackendSettings, checkpoint: Path, pad_id: int) -> None:
        try:
            audit_checkpoint(checkpoint)  # transformers reads the folder too: the same rules as medgate's reads
            config = read_checkpoint_json(checkpoint, "config.json")
        except CheckpointError as error:
            raise BackendUnavailable(f"refusing checkpoint folder {checkpoint}: {error}") from None
        context = int(config.get("max_position_embeddings") or 2048)
        self.model = TorchLogitsModel(checkpoint, settings.device, settings.dtype, settings.threads, pad_id,
                                      min(context, settings.max_context or context))
        self.engine = Engine(self.model, batch_policy(settings), settings.prefix_sharing)
        self.info = BackendInfo(
            name="torch",
            device=settings.device,
            execution_provider="torch-eager",
            dtype=settings.dtype,
            max_context=self.model.max_context,
            details=self.model.versions,
        )
