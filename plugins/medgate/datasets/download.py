"""Downloading upstream files: verified against the registry's sha256 before they appear on disk.

A file is streamed into a temporary file beside its target, hashed on the way, and moved into
place with os.replace only when its sha256 matches; any failure removes the temporary file, so
the data directory never holds a partial or unverified file under a name a converter reads.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from medgate import __version__
from medgate.datasets.errors import FetchError
from medgate.datasets.registry import DatasetSpec, UpstreamFile
from medgate.items import file_sha256

CHUNK = 1 << 16
LARGE = 1 << 20  # show progress for files above this size
TIMEOUT_S = 60.0
MIN_BYTES_PER_S = 10_000  # after TIMEOUT_S, slower than this is a stalled server, not a slow link


@dataclass(frozen=True)
class Fetched:
    path: Path
    status: str  # "downloaded" or "present"
    url: str | None = None
    size: int = 0


def check_mirror(base: str) -> str:
    """A usable mirror base URL, or FetchError: a password would be printed with every error, and a
    query or fragment would end up in the middle of each file's URL."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.hostname):
        raise FetchError(f"--mirror must be an http(s) or file URL such as https://mirror.example/medgate, "
                         f"got {base!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise FetchError("--mirror must not hold credentials, a query or a fragment")
    return base


def mirror_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(path)


class _Progress:
    """Percent on one stderr line, only for large files on a terminal (logs stay readable)."""

    def __init__(self, label: str, total: int | None, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.enabled = bool(total and total >= LARGE and stream.isatty())
        self.shown = -1

    def update(self, done: int) -> None:
        if not self.enabled or not self.total:
            return
        percent = min(100, done * 100 // self.total)
        if percent != self.shown:
            self.shown = percent
            self.stream.write(f"\r  {self.label}: {percent:3d}% of {self.total / 1e6:.1f} MB")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _download(url: str, target: Path, expected_sha256: str, label: str, stream: TextIO) -> int:
    """One attempt; returns the size written or raises FetchError (after removing the temporary file)."""
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    created = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.open rather than mkstemp: the finished file gets the user's umask, not mode 0600.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise FetchError(f"cannot write in {target.parent} ({error.strerror})") from None
    progress: _Progress | None = None
    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"medgate/{__version__}"})
        digest = hashlib.sha256()
        size = 0
        started = time.monotonic()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress = _Progress(label, total, stream)
            # read1: what has arrived, so a server that drips bytes is measured, not waited on per block.
            for block in iter(lambda: response.read1(CHUNK), b""):
                digest.update(block)
                out.write(block)
                size += len(block)
                progress.update(size)
                elapsed = time.monotonic() - started
                if elapsed > TIMEOUT_S and size < MIN_BYTES_PER_S * elapsed:
                    raise FetchError(f"the download ran slower than {MIN_BYTES_PER_S // 1000} kB/s for "
                                     f"{elapsed:.0f} s ({size} bytes); giving up")
        if total is not None and size != total:
            raise FetchError(f"got {size} bytes, the server announced {total} (connection cut?)")
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise FetchError(f"sha256 mismatch: expected {expected_sha256}, got {actual} ({size} bytes); "
                             "the file was not saved")
        os.replace(temporary, target)
        return size
    except FetchError:
        raise
    except urllib.error.HTTPError as error:
        raise FetchError(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise FetchError(f"cannot connect ({error.reason})") from None
    except (http.client.HTTPException, OSError, ValueError) as error:
        raise FetchError(f"{type(error).__name__}: {error}") from None
    finally:
        if progress is not None:
            progress.close()
        temporary.unlink(missing_ok=True)
        if not target.is_file():
            for folder in created:  # deepest first: what this attempt made, if it is still empty
                try:
                    folder.rmdir()
                except OSError:
                    break


def fetch_file(dataset: str, upstream: UpstreamFile, data_dir: Path, urls: Sequence[str], force: bool = False,
               stream: TextIO | None = None) -> Fetched:
    """Make `data_dir/upstream.path` the registered file, trying each URL in turn."""
    stream = stream or sys.stderr
    if upstream.sha256 is None:
        raise FetchError(f"dataset {dataset!r}: the registry has no sha256 for {upstream.path}")
    target = data_dir / upstream.path
    if not force and target.is_file() and file_sha256(target) == upstream.sha256:
        return Fetched(target, "present")
    if not urls:
        raise FetchError(f"dataset {dataset!r}: no URL to fetch {upstream.path} from")
    failures = []
    for url in urls:
        stream.write(f"medgate fetch: {dataset}: {upstream.path} <- {url}\n")
        try:
            size = _download(url, target, upstream.sha256, upstream.path, stream)
        except FetchError as error:
            failures.append(f"{url}: {error}")
            continue
        return Fetched(target, "downloaded", url, size)
    tried = "; ".join(failures)
    raise FetchError(f"dataset {dataset!r}: could not fetch {upstream.path} into {data_dir} ({tried})")


def fetch_datasets(specs: Iterable[DatasetSpec], data_dir: Path, mirror: str | None = None,
                   force: bool = False, stream: TextIO | None = None,
                   report: Callable[[str, Fetched], None] | None = None) -> list[Fetched]:
    """Fetch every file of these datasets once (datasets may share files), stopping at the first failure."""
    done: dict[str, Fetched] = {}
    for spec in specs:
        if spec.bundled:
            continue
        for upstream in spec.files:
            if upstream.path in done:
                continue
            urls = [mirror_url(mirror, upstream.path)] if mirror else list(upstream.urls)
            fetched = fetch_file(spec.name, upstream, data_dir, urls, force, stream)
            done[upstream.path] = fetched
            if report is not None:
                report(spec.name, fetched)
    return list(done.values())
