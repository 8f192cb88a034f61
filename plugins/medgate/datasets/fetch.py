"""Download registered datasets' upstream files into the data directory, verifying each sha256.

Files go where the converters look for them (--data-dir, else $MEDGATE_DATA_DIR, else a per-user
cache). URLs come from fixtures/datasets/registry.toml; --mirror (or $MEDGATE_DATASET_MIRROR)
fetches BASE_URL/<path> instead, for an internal mirror of the same layout. A file already there
with the right sha256 is kept. Runs never download datasets; only this command does.
"""

from __future__ import annotations

import argparse
import os
import sys

from medgate.datasets import default_data_dir
from medgate.datasets.download import Fetched, check_mirror, fetch_datasets
from medgate.datasets.errors import FetchError
from medgate.datasets.registry import DatasetSpec, RegistryError, UnknownDataset, get_spec, registry
from medgate.options import FILE_PATH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="registered dataset names (see fixtures/datasets/registry.toml), or `all`")
    parser.add_argument("--data-dir", type=FILE_PATH, metavar="DIR",
                        help="where to store the files (default: $MEDGATE_DATA_DIR or a per-user cache)")
    parser.add_argument("--mirror", metavar="BASE_URL", default=os.environ.get("MEDGATE_DATASET_MIRROR") or None,
                        help="fetch BASE_URL/<path> instead of the registry URLs "
                             "(default: $MEDGATE_DATASET_MIRROR)")
    parser.add_argument("--force", action="store_true",
                        help="download again even when a verified file is present")


def _selected(names: list[str]) -> list[DatasetSpec]:
    named = [get_spec(name) for name in dict.fromkeys(names) if name != "all"]  # a typo beside `all` is still one
    return list(registry().values()) if "all" in names else named


def run(args: argparse.Namespace) -> int:
    try:
        specs = _selected(args.names)
    except (UnknownDataset, RegistryError) as error:
        print(f"medgate fetch: {error.args[0]}", file=sys.stderr)
        return 2
    try:
        if args.mirror is not None:
            check_mirror(args.mirror)  # `--mirror ''` too: an empty mirror would quietly mean the registry URLs
    except FetchError as error:
        print(f"medgate fetch: {error}", file=sys.stderr)
        return 2
    data_dir = default_data_dir(args.data_dir)
    for spec in specs:
        if spec.bundled and "all" not in args.names:
            print(f"{spec.name}: bundled with medgate, nothing to fetch")

    def report(dataset: str, fetched: Fetched) -> None:
        if fetched.status == "present":
            print(f"{dataset}: {fetched.path} already present (sha256 verified)")
        else:
            print(f"{dataset}: {fetched.path} downloaded ({fetched.size} bytes, sha256 verified)")

    try:
        fetch_datasets(specs, data_dir, mirror=args.mirror, force=args.force, report=report)
    except FetchError as error:
        print(f"medgate fetch: {error}", file=sys.stderr)
        return 1
    return 0
