"""Build a tiny model: trained on the bundled sample items (default), degraded with seeded weight
noise (--noise [X], X times each tensor's standard deviation), or left untrained (--untrained).
Without OUT the build goes to medgate's cache, where `--model tiny` finds it.

An existing OUT is replaced only with --force and only when it holds a tiny build: a folder that
holds anything else is never deleted. The new build is written beside OUT and moved in once it is
complete, so a failed build leaves the old one as it was."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from medgate.paths import creation_refusal
from medgate.tiny import COMPLETE_MARKER, DEFAULT_NOISE, TinyBuildError, TinyRecipe, build_tiny, ensure_tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", type=Path, help="folder to write the checkpoint to (default: the cache)")
    parser.add_argument("--seed", type=int, default=0, help="training and noise seed (default 0)")
    parser.add_argument("--noise", nargs="?", type=float, const=DEFAULT_NOISE, default=None, metavar="X",
                        help=f"add seeded Gaussian noise, X times each tensor's std (default X={DEFAULT_NOISE})")
    parser.add_argument("--untrained", action="store_true", help="keep the random initial weights")
    parser.add_argument("--force", action="store_true", help="replace OUT if it holds a tiny build already")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.noise is not None and not (math.isfinite(args.noise) and args.noise >= 0):
        print(f"medgate make-tiny: --noise must be a finite number >= 0, got {args.noise}", file=sys.stderr)
        return 2
    recipe = TinyRecipe(seed=args.seed, noise=args.noise, untrained=args.untrained)
    try:
        if args.out is None:
            path = ensure_tiny(recipe, quiet=args.quiet)
        else:
            refusal = _refusal(args.out, args.force)
            if refusal is not None:
                print(f"medgate make-tiny: {refusal}", file=sys.stderr)
                return 2
            path = _build_in_place(recipe, args.out, args.quiet)
    except TinyBuildError as error:
        print(f"medgate make-tiny: {error}", file=sys.stderr)
        return 1
    summary = json.loads((path / COMPLETE_MARKER).read_text())
    print(f"{path}  (sample accuracy under p0: {summary['sample_accuracy_default_prompt']:.1%})")
    return 0


def _refusal(out: Path, force: bool) -> str | None:
    """Why OUT cannot be written, or None."""
    if out.is_symlink():
        return f"{out} is a symbolic link: give the folder itself"
    if out.exists():
        if not out.is_dir():
            return f"{out} exists and is not a folder"
        if any(out.iterdir()):
            if not (out / COMPLETE_MARKER).is_file():
                return f"{out} is a folder that holds no tiny build: it is left alone (choose an empty or new folder)"
            if not force:
                return f"{out} holds a tiny build already (use --force to replace it)"
    return creation_refusal(out)


def _build_in_place(recipe: TinyRecipe, out: Path, quiet: bool) -> Path:
    """Build beside `out`, then swap it in: until the new build is complete the old one stays."""
    staging = out.with_name(f"{out.name}.building-{os.getpid()}")
    try:
        build_tiny(recipe, staging, quiet=quiet)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
