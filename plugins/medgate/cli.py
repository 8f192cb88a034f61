"""The `medgate` command: make-tiny, plus the commands registered in `COMMANDS`.

Each subcommand lives in the module that owns its idea and exposes `add_arguments(parser)` and
`run(args) -> int`; this module only wires them, importing a command's module when it is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medgate.interrupts import TerminateAsInterrupt
from medgate.paths import CacheDirError

# name -> (module, one-line help). Modules are imported lazily: `medgate diff` must not load onnxruntime.
COMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny": ("medgate.tiny.command", "build the tiny test-double model (optionally degraded or untrained)"),
    "fetch": ("medgate.datasets.fetch", "download registered datasets' upstream files and verify their sha256"),
    "diff": ("medgate.compare.command", "compare two run reports: paired statistics, flipped items, regressions"),
    "table": ("medgate.table.command", "several models' reports in one table, optionally against a reference model"),
    "parity": ("medgate.parity", "compare ONNX Runtime with transformers on the same prompts"),
    "bench": ("medgate.bench.command", "measure medgate against a transformers loop and lm-evaluation-harness"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser, with the arguments of `command` only: its module is the only one imported."""
    # No abbreviations: `--mode` must not pass for `--model` where a command has only the latter.
    parser = argparse.ArgumentParser(prog="medgate", description="Release gates for clinical language models.",
                                     allow_abbrev=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        if name == command:
            module = importlib.import_module(module_name)
            sub.description = (module.__doc__ or summary).strip()
            module.add_arguments(sub)
            sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser(command).parse_args(arguments)
    signals = TerminateAsInterrupt()
    signals.install()  # SIGTERM (a CI cancel, `timeout`) unwinds like Ctrl-C: partial files are removed
    try:
        return int(args._module.run(args))
    except CacheDirError as error:  # whichever command reached the cache first
        print(f"medgate {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medgate: interrupted", file=sys.stderr)
        return 130
    finally:
        signals.restore()
