"""Content fingerprints of checkpoints, cheap to recompute on every run.

Weight files are hashed once and remembered by their inode, size, mtime and ctime (any write or
rename into place changes the ctime, which no tool sets back). A file's name is never taken as its
hash: a symlink named like a sha256 may point at any weights. Only a blob that really sits in the
hub cache repository of the snapshot being read is known by its name, and only a safetensors blob
whose size is what its own header says (a truncated download is hashed, not trusted).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

from filelock import FileLock

from medgate.checkpoint_files import checked_file, hub_blob_of, read_checkpoint_bytes
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


def _safetensors_extent(path: Path) -> int | None:
    """The size a safetensors file must have by its header (8-byte length, JSON, tensor data)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 << 20:
                return None
            header = json.loads(handle.read(length))
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return None
    return 8 + length + max(ends, default=0)


def _verified_hub_blob(directory: Path, name: str, target: Path) -> str | None:
    """The sha256 a hub blob is named by, where that name can be believed."""
    if not (directory / name).is_symlink() or not _HUB_BLOB.match(target.name) or not hub_blob_of(directory, target):
        return None
    if not name.endswith(".safetensors") or _safetensors_extent(target) != target.stat().st_size:
        return None
    return target.name


def file_content_hash(path: Path) -> str:
    """sha256 of a regular file's bytes, remembered while the file is unchanged."""
    status = path.stat()
    key = f"{status.st_dev}:{status.st_ino}|{status.st_size}|{status.st_mtime_ns}|{status.st_ctime_ns}"
    store, known = _remembered_hashes()
    if key in known:
        return known[key]
    digest = file_sha256(path)
    with FileLock(str(store) + ".lock"):
        _, known = _remembered_hashes()
        known[key] = digest
        temporary = store.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(known, indent=0, sort_keys=True))
        os.replace(temporary, store)
    return digest


def weight_file_hash(directory: Path, name: str) -> str:
    target = checked_file(directory, name)
    return _verified_hub_blob(directory, name, target) or file_content_hash(target)


def checkpoint_fingerprint(directory: Path) -> str:
    """sha256 over the config, tokenizer files and every weight file's hash."""
    digest = hashlib.sha256()
    for name in _CONTENT_FILES:
        path = directory / name
        if os.path.lexists(path):
            digest.update(name.encode())
            # Regular files by their bytes (as since the first fingerprints); symlinks by their target's hash.
            digest.update(weight_file_hash(directory, name).encode() if path.is_symlink()
                          else read_checkpoint_bytes(directory, name))
    weights = sorted(p for p in directory.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
    if not weights:
        raise FileNotFoundError(f"{directory} holds no weight files ({', '.join(_WEIGHT_SUFFIXES)})")
    for path in weights:
        digest.update(path.name.encode())
        digest.update(weight_file_hash(directory, path.name).encode())
    return digest.hexdigest()

