"""Where medgate finds its versioned fixtures and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def fixtures_dir() -> Path:
    """The repository's `fixtures/` folder (override with MEDGATE_FIXTURES_DIR)."""
    configured = os.environ.get("MEDGATE_FIXTURES_DIR")
    path = Path(configured) if configured else _SOURCE_ROOT / "fixtures"
    if not path.is_dir():
        raise FileNotFoundError(
            f"medgate fixtures folder not found at {path}; medgate runs from its source checkout "
            "(pip install -e .), or set MEDGATE_FIXTURES_DIR"
        )
    return path


class CacheDirError(OSError):
    pass


def cache_dir() -> Path:
    """Root of medgate's caches: built models, ONNX exports, converted items, predictions."""
    configured = os.environ.get("MEDGATE_CACHE_DIR")
    if configured:
        path = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "medgate"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        source = "MEDGATE_CACHE_DIR" if configured else "the cache folder"
        raise CacheDirError(f"{source} {path} is no usable folder: {error.strerror or error}") from None
    return path



def creation_refusal(path: Path) -> str | None:
    """Why `path` could not be created (its nearest existing folder is a file, or not writable), or None.
    Commands that work for minutes check their output path with it first, so a typo costs no run."""
    parent = path.absolute().parent
    existing = next(folder for folder in (parent, *parent.parents) if folder.exists())
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write into {existing}"
    return None
