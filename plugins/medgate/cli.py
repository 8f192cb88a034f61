"""The `medgate` command: make-tiny, plus the commands registered in `COMMANDS`.

Each subcommand lives in the module that owns its idea and exposes `add_arguments(parser)` and
`run(args) -> int`; this module only wires them, importing a command's module when it is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Modules are imported lazily: `medgate diff` must not load onnxruntime.
COMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny": ("medgate.tiny.command", "build the tiny test-double model (optionally degraded or untrained)"),
    "diff": ("medgate.compare.command", "compare two run reports: paired statistics, flipped items, regressions"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgate", description="Release gates for clinical language models.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=summary, description=(module.__doc__ or summary).strip())
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args))
    except KeyboardInterrupt:
        print("medgate: interrupted", file=sys.stderr)
        return 130
