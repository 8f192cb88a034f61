"""Content fingerprints of checkpoints, cheap to recompute on every run.

Weight files are hashed once and remembered by (path, size, mtime); files in a Hugging Face hub
cache are symlinks to blobs named by their sha256, which is used directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from filelock import FileLock

from medgate.items import file_sha256
from medgate.paths import cache_dir

_CONTENT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                  "chat_template.jinja", "special_tokens_map.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".pt")
_HUB_BLOB = re.compile(r"^[0-9a-f]{64}$")


def _remembered_hashes() -> tuple[Path, dict[str, str]]:
    path = cache_dir() / "file-hashes.json"
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError):
        return path, {}


def weight_file_hash(path: Path) -> str:
    resolved = path.resolve()
    if _HUB_BLOB.match(resolved.name):
        return resolved.name
    stat = resolved.stat()
    key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    store, known = _remembered_hashes()
    if key in known:
        return known[key]
    digest = file_sha256(resolved)
    with FileLock(str(store) + ".lock"):
        _, known = _remembered_hashes()
        known[key] = digest
        temporary = store.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(known, indent=0, sort_keys=True))
        os.replace(temporary, store)
    return digest


def checkpoint_fingerprint(directory: Path) -> str:
    """sha256 over the config, tokenizer files and every weight file's hash."""
    digest = hashlib.sha256()
    for name in _CONTENT_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(weight_file_hash(path).encode() if path.is_symlink() else path.read_bytes())
    weights = sorted(p for p in directory.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
    if not weights:
        raise FileNotFoundError(f"{directory} holds no weight files ({', '.join(_WEIGHT_SUFFIXES)})")
    for path in weights:
        digest.update(path.name.encode())
        digest.update(weight_file_hash(path).encode())
    return digest.hexdigest()
