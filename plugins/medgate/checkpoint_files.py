"""A checkpoint folder is untrusted input: which of its files may be read, and how much of them.

A folder given as --model can hold symlinks to anywhere (`chat_template.jinja -> /proc/self/environ`
would put the process environment into prompts and reports), device files and fifos (a weights file
pointing at /dev/zero never ends), and configuration that asks transformers to run the folder's own
Python code. Every file medgate or transformers reads from a checkpoint must be a regular file inside
the folder, or a blob of a Hugging Face hub cache (where snapshot files are symlinks to
`<repo>/blobs/<sha>`). `audit_checkpoint` checks the whole folder once, before any case runs;
`read_checkpoint_bytes` checks again at every read, with a size bound.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

# Bounds on what is read into memory. Real files are far smaller: Llama 3's tokenizer.json is 9 MB,
# Gemma 3's (among the largest vocabularies) 33 MB; chat templates are a few KB.
MAX_TEXT_BYTES = 128 << 20
MAX_TEMPLATE_BYTES = 1 << 20
CODE_KEYS = ("auto_map",)  # what makes transformers import Python files from the folder
CODE_CONFIGS = ("config.json", "tokenizer_config.json")


class CheckpointError(ValueError):
    """A checkpoint folder holds something medgate refuses to read; the message names the file."""


class MalformedJson(CheckpointError):
    """A checkpoint's JSON file does not parse."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def hub_blob_of(directory: Path, target: Path) -> bool:
    """Whether `target` is a blob of the hub cache repository whose snapshot `directory` is."""
    snapshot = Path(os.path.realpath(directory))
    repository = snapshot.parent.parent
    return (snapshot.parent.name == "snapshots" and repository.name.startswith(("models--", "datasets--"))
            and target.parent == repository / "blobs")


def checked_file(directory: Path, name: str, allow_folder: bool = False) -> Path:
    """The real path of `directory/name`, refused unless it is a regular file the folder may hand out."""
    path = directory / name
    target = Path(os.path.realpath(path))
    folder = Path(os.path.realpath(directory))
    if path.is_symlink() and not (target.is_relative_to(folder) or hub_blob_of(directory, target)):
        raise CheckpointError(f"{path} is a symlink to {os.readlink(path)}, outside the checkpoint folder; medgate "
                              "reads only files inside it (or blobs of a Hugging Face hub cache)")
    try:
        mode = os.stat(target).st_mode
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror})") from None
    if not stat.S_ISREG(mode) and not (allow_folder and stat.S_ISDIR(mode)):
        raise CheckpointError(f"{path} is {_kind(mode)}; a checkpoint file must be a regular file")
    return target


def read_checkpoint_bytes(directory: Path, name: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    target = checked_file(directory, name)
    with target.open("rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since the check
            raise CheckpointError(f"{directory / name} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(f"{directory / name} is larger than {limit >> 20} MiB, more than such a file "
                              "ever holds; refusing to read it")
    return data


def read_checkpoint_text(directory: Path, name: str, limit: int = MAX_TEXT_BYTES) -> str:
    try:
        return read_checkpoint_bytes(directory, name, limit).decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{directory / name}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def read_checkpoint_json(directory: Path, name: str) -> dict[str, Any]:
    """A JSON object from the folder, {} when the file is absent."""
    if not os.path.lexists(directory / name):
        return {}
    try:
        data = json.loads(read_checkpoint_text(directory, name))
    except (ValueError, RecursionError) as error:
        raise MalformedJson(f"{directory / name}: not valid JSON ({error})") from None
    return data if isinstance(data, dict) else {}


def audit_checkpoint(directory: Path) -> None:
    """Refuse the folder if any file in it could lead a reader outside it, never end, or run code."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise CheckpointError(f"{directory}: cannot list the checkpoint folder ({error.strerror})") from None
    for entry in entries:
        checked_file(directory, entry.name, allow_folder=True)
    for name in CODE_CONFIGS:
        try:
            config = read_checkpoint_json(directory, name)
        except MalformedJson:
            continue  # asks for no code; failing to load it is the loader's one clear error
        asked = [key for key in CODE_KEYS if key in config]
        if asked:
            raise CheckpointError(
                f"{directory / name} asks for the checkpoint's own Python code ({asked[0]}: "
                f"{json.dumps(config[asked[0]])[:120]}); medgate never runs code from a checkpoint folder "
                "(trust_remote_code is always off)"
            )
