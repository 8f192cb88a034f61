"""Model references: an alias from fixtures/models.toml, a local folder, or a hub id.

Resolving an alias or spelling is cheap and happens when options are parsed, so a typo is a usage
error before any worker starts; so is a local folder that medgate refuses to read (symlinks leaving
it, device files, custom code, a chat template that hangs: see checkpoint_files). Materialising (building `tiny`, finding or downloading a hub
snapshot) happens later, on the worker that needs the weights.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from medgate.checkpoint_files import CheckpointError, audit_checkpoint, read_checkpoint_text
from medgate.paths import fixtures_dir
from medgate.tokenization import TextTokenizer, TokenizerError

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")


class ModelError(ValueError):
    pass


@dataclass(frozen=True)
class ModelRef:
    alias: str  # what the user typed
    kind: str  # "tiny", "local", "hub" or "random"
    path: Path | None = None
    hub_id: str | None = None
    revision: str | None = None
    config_name: str | None = None  # for kind "random"

    def describe(self) -> str:
        if self.kind == "local":
            return str(self.path)
        if self.kind == "hub":
            return f"{self.hub_id}@{self.revision}" if self.revision else str(self.hub_id)
        return self.alias


@lru_cache(maxsize=None)
def model_registry() -> dict[str, dict[str, Any]]:
    with (fixtures_dir() / "models.toml").open("rb") as handle:
        return tomllib.load(handle)


def _environment_override(alias: str) -> str | None:
    return os.environ.get("MEDGATE_MODEL_" + re.sub(r"[-.]", "_", alias).upper()) or None


def resolve_model(spec: str) -> ModelRef:
    if not spec.strip():
        raise ModelError("the model name is empty (give an alias, a checkpoint folder, a hub id or random:<config>)")
    known = model_registry()
    if spec in known:
        entry = known[spec]
        if entry.get("kind") == "tiny":
            return ModelRef(alias=spec, kind="tiny")
        override = _environment_override(spec)
        target = override or entry.get("path") or entry.get("hub_id")
        if not target:
            raise ModelError(
                f"model {spec!r} has neither `path` nor `hub_id` filled in fixtures/models.toml; fill one in or "
                f"set MEDGATE_MODEL_{re.sub(r'[-.]', '_', spec).upper()}"
            )
        resolved = resolve_model(target) if target != spec else None
        if resolved is None:
            raise ModelError(f"model {spec!r} points at itself")
        revision = entry.get("revision") if resolved.kind == "hub" and not override else resolved.revision
        return ModelRef(alias=spec, kind=resolved.kind, path=resolved.path, hub_id=resolved.hub_id,
                        revision=revision or resolved.revision)
    if spec.startswith("random:"):
        from medgate.random_weights import config_path

        name = spec.removeprefix("random:")
        config_path(name)  # an unknown config is a usage error now, not on a worker later
        return ModelRef(alias=spec, kind="random", config_name=name)
    path = Path(spec).expanduser()
    if path.is_dir():
        check_checkpoint(path)
        return ModelRef(alias=spec, kind="local", path=path.resolve())
    if _HUB_ID.match(spec) and not path.exists() and not spec.startswith((".", "/", "~")):
        hub_id, _, revision = spec.partition("@")
        return ModelRef(alias=spec, kind="hub", hub_id=hub_id, revision=revision or None)
    raise ModelError(
        f"unknown model {spec!r}: not an alias ({', '.join(known)}), not a local folder, "
        "not a hub id (org/name[@revision])"
    )


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint folder medgate must not read, naming the file at fault."""
    try:
        audit_checkpoint(path)
        _check_context(path)
        if (path / "tokenizer.json").is_file():
            TextTokenizer(path).check_template()
    except (CheckpointError, TokenizerError) as error:
        raise ModelError(f"refusing checkpoint folder {path}: {error}") from None


def _check_context(path: Path) -> None:
    """A context length that is no positive integer would be read as the 2048 default, or break every pass."""
    if not (path / "config.json").is_file():
        return
    try:
        config = json.loads(read_checkpoint_text(path, "config.json"))
    except ValueError as error:
        raise CheckpointError(f"{path / 'config.json'}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'}: not a JSON object")
    context = config.get("max_position_embeddings")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context <= 0):
        raise CheckpointError(f"{path / 'config.json'}: max_position_embeddings = {context!r} is no positive integer")


def materialize(ref: ModelRef, allow_download: bool = False) -> Path:
    """The local checkpoint folder for `ref`, building or fetching it when needed."""
    if ref.kind == "hub":
        snapshot = _hub_snapshot(ref, allow_download)
        check_checkpoint(snapshot)
        return snapshot
    if ref.kind == "tiny":
        from medgate.tiny import ensure_tiny

        return ensure_tiny()
    if ref.kind == "local":
        assert ref.path is not None
        return ref.path
    if ref.kind == "random":
        from medgate.random_weights import ensure_random_checkpoint

        return ensure_random_checkpoint(str(ref.config_name))
    raise ModelError(f"unknown model kind {ref.kind!r}")


def _hub_snapshot(ref: ModelRef, allow_download: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as error:
        raise ModelError("hub models need huggingface_hub: pip install -e '.[cpu]'") from error
    patterns = ["*.json", "*.safetensors", "*.jinja", "tokenizer*"]
    hub_id = ref.hub_id
    if hub_id is None:
        raise ModelError(f"{ref.describe()} names no Hugging Face repository")
    try:
        return Path(snapshot_download(hub_id, revision=ref.revision, allow_patterns=patterns,
                                      local_files_only=True))
    except LocalEntryNotFoundError:
        if not allow_download:
            raise ModelError(
                f"{ref.describe()} is not in the local Hugging Face cache; pass --download to fetch it "
                "(medgate never goes to the network unless asked)"
            ) from None
    return Path(snapshot_download(hub_id, revision=ref.revision, allow_patterns=patterns))
