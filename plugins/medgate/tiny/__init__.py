"""The embedded default model `tiny`: a small Llama trained on the bundled sample items.

It is a test double for the harness, not a clinical model: it memorises the sample items under
the default prompts so that gates and comparisons mean something, and it is brittle elsewhere.
Building needs torch and transformers and runs in a subprocess, so pytest workers stay light.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from medgate.paths import cache_dir
from medgate.tiny.recipe import DEFAULT_NOISE, TinyRecipe

__all__ = ["DEFAULT_NOISE", "TinyRecipe", "build_tiny", "ensure_tiny"]

# Bit-identical training across CPUs needs these set before torch is imported.
DETERMINISM_ENV = {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}
COMPLETE_MARKER = "medgate_tiny.json"


class TinyBuildError(RuntimeError):
    pass


def build_tiny(recipe: TinyRecipe, out: Path, quiet: bool = False) -> Path:
    """Build into `out` in a fresh interpreter with the determinism settings; returns `out`."""
    command = [sys.executable, "-m", "medgate.tiny.build", str(out), "--seed", str(recipe.seed)]
    if recipe.noise is not None:
        command += ["--noise", repr(recipe.noise)]
    if recipe.untrained:
        command.append("--untrained")
    if quiet:
        command.append("--quiet")
    environment = {**os.environ, **DETERMINISM_ENV}
    completed = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, check=False)
    if completed.returncode != 0 or not (out / COMPLETE_MARKER).is_file():
        raise TinyBuildError(f"building the tiny model into {out} failed (exit {completed.returncode})")
    return out


def ensure_tiny(recipe: TinyRecipe | None = None, quiet: bool = False) -> Path:
    """The cached build for `recipe`, built once under a file lock (xdist workers wait for it)."""
    recipe = recipe or TinyRecipe()
    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / recipe.folder_name()
    if (target / COMPLETE_MARKER).is_file():
        return target
    with FileLock(str(target) + ".lock"):
        if (target / COMPLETE_MARKER).is_file():
            return target
        staging = target.with_name(target.name + f".building-{os.getpid()}")
        build_tiny(recipe, staging, quiet=quiet)
        os.replace(staging, target)
    return target
