"""The tiny model's recipe: architecture, tokenizer and training settings, and its cache key.

Light on purpose (no torch): the plugin computes the cache key on every run to find a built model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from medgate.items import file_sha256
from medgate.paths import fixtures_dir

# Bump when the build code changes in a way that changes the weights.
RECIPE_VERSION = 1

TRAINING_PROMPTS = ("p0", "j0")  # the default log-likelihood and JSON prompts
TRAINING_DATASETS = ("sample-en", "sample-es")

ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 192,
    "max_position_embeddings": 1024,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}

# Default weight-noise factor of `make-tiny --noise` (times each tensor's std); see README.
DEFAULT_NOISE = 1.5


@dataclass(frozen=True)
class TrainingSettings:
    vocab_size: int = 1536
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    clip_norm: float = 1.0


@dataclass(frozen=True)
class TinyRecipe:
    seed: int = 0
    noise: float | None = None  # None: no noise; else the factor times each tensor's std
    untrained: bool = False
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def key(self) -> str:
        """Content key: the recipe plus every input file the build reads."""
        fixtures = fixtures_dir()
        inputs = {
            name: file_sha256(fixtures / "datasets" / f"{name}.jsonl") for name in TRAINING_DATASETS
        }
        prompts = {p.name: file_sha256(p) for p in sorted((fixtures / "prompts").glob("*.toml"))}
        payload = {
            "version": RECIPE_VERSION,
            "architecture": ARCHITECTURE,
            "recipe": asdict(self),
            "datasets": inputs,
            "prompts": prompts,
        }
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def folder_name(self) -> str:
        variant = "untrained" if self.untrained else "trained"
        if self.noise is not None:
            variant += f"-noise{self.noise:g}"
        return f"tiny-{variant}-s{self.seed}-{self.key()}"
