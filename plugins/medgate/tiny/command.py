"""Build a tiny model: trained on the bundled sample items (default), degraded with seeded weight
noise (--noise [X], X times each tensor's standard deviation), or left untrained (--untrained).
Without OUT (or with --cached) the build goes to medgate's cache, where `--model tiny` finds it."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from medgate.tiny import COMPLETE_MARKER, DEFAULT_NOISE, TinyBuildError, TinyRecipe, build_tiny, ensure_tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", type=Path, help="folder to write the checkpoint to (default: the cache)")
    parser.add_argument("--seed", type=int, default=0, help="training and noise seed (default 0)")
    parser.add_argument("--noise", nargs="?", type=float, const=DEFAULT_NOISE, default=None, metavar="X",
                        help=f"add seeded Gaussian noise, X times each tensor's std (default X={DEFAULT_NOISE})")
    parser.add_argument("--untrained", action="store_true", help="keep the random initial weights")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.noise is not None and args.noise < 0:
        print("medgate make-tiny: --noise must be >= 0", file=sys.stderr)
        return 2
    recipe = TinyRecipe(seed=args.seed, noise=args.noise, untrained=args.untrained)
    try:
        if args.out is None:
            path = ensure_tiny(recipe, quiet=args.quiet)
        else:
            if args.out.exists():
                if not args.force:
                    print(f"medgate make-tiny: {args.out} exists (use --force to overwrite)", file=sys.stderr)
                    return 2
                shutil.rmtree(args.out)
            path = build_tiny(recipe, args.out, quiet=args.quiet)
    except TinyBuildError as error:
        print(f"medgate make-tiny: {error}", file=sys.stderr)
        return 1
    summary = json.loads((path / COMPLETE_MARKER).read_text())
    print(f"{path}  (sample accuracy under p0: {summary['sample_accuracy_default_prompt']:.1%})")
    return 0
