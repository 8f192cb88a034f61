"""Errors raised while resolving, fetching or converting datasets."""

from __future__ import annotations


class DatasetError(RuntimeError):
    """A dataset cannot be used as asked; the message says which dataset and what to do."""


class UpstreamFormatError(DatasetError):
    """An upstream file is truncated or malformed; the message names the file and the record."""


class FetchError(DatasetError):
    """A download failed or did not match its checksum; nothing was left behind."""


class DatasetWarning(UserWarning):
    """Usable, but not what the registry describes (e.g. a file whose sha256 differs)."""
