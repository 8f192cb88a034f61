"""A persistent cache of model outputs, so that a re-run or a gate-only change does not recompute.

Keyed by everything that determines an output: the model fingerprint (which covers the tokenizer),
the backend, device and dtype, the engine version, the context limit, and the exact text of the
request (prompt and continuations, or the generation budget). Keying on text rather than token ids
lets a cache hit skip tokenization, which was most of the cost of a cached case. Stored in SQLite (WAL) under the cache folder, which
several xdist workers can read and write at once.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from medgate.backends.base import GenerateResult, ScoreResult

# Bump when the engine's numerics or decoding change, so old entries are not reused.
ENGINE_VERSION = 2  # 2: scoring and prefill through shared prefixes


def request_key(namespace: str, prompt: str, continuations: Sequence[str], max_new_tokens: int | None) -> str:
    """Scoring requests have continuations; generation requests a token budget instead."""
    digest = hashlib.sha256(namespace.encode())
    kind = "score" if max_new_tokens is None else f"generate|{max_new_tokens}"
    digest.update(json.dumps([kind, prompt, list(continuations)], ensure_ascii=False).encode())
    return digest.hexdigest()


def namespace_for(fingerprint: str, backend: str, device: str, dtype: str, max_context: int | None) -> str:
    return f"v{ENGINE_VERSION}|{fingerprint}|{backend}|{device}|{dtype}|{max_context}"


def _encode(result: ScoreResult | GenerateResult) -> str:
    if isinstance(result, ScoreResult):
        return json.dumps({"s": list(result.logprobs), "t": result.truncated_tokens, "n": result.non_finite})
    return json.dumps({"g": list(result.token_ids), "r": result.stop_reason, "t": result.truncated_tokens,
                       "n": result.non_finite})


def _decode(text: str) -> ScoreResult | GenerateResult:
    data: dict[str, Any] = json.loads(text)
    if "s" in data:
        return ScoreResult(tuple(data["s"]), data["t"], data["n"])
    return GenerateResult(tuple(data["g"]), data["r"], data["t"], data.get("n", False))


class PredictionCacheWarning(UserWarning):
    pass


class PredictionCache:
    """A damaged database file is never the end of a run (as with the item cache): it is set aside with
    a warning and started afresh, and a cache that cannot be used at all only costs speed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection: sqlite3.Connection | None = None
        try:
            self._connection = self._open()
        except sqlite3.DatabaseError as error:
            self._recover(error)

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
            )
            connection.execute("CREATE TABLE IF NOT EXISTS backends (namespace TEXT PRIMARY KEY, info TEXT)")
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def _recover(self, error: sqlite3.DatabaseError) -> None:
        """After `error`: rebuild a damaged file (once, whichever worker sees it first), else stop using it."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if isinstance(error, sqlite3.OperationalError):  # locked, read-only, disk full: the file may be fine
            warnings.warn(f"prediction cache {self.path} unusable ({error}); this run recomputes without it",
                          PredictionCacheWarning, stacklevel=3)
            return
        warnings.warn(f"prediction cache {self.path} is damaged ({error}); rebuilding it (its predictions are "
                      "recomputed)", PredictionCacheWarning, stacklevel=3)
        try:
            with FileLock(str(self.path) + ".lock"):
                if not self._intact():
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self._connection = self._open()
        except (OSError, sqlite3.DatabaseError) as second:
            warnings.warn(f"prediction cache {self.path} could not be rebuilt ({second}); this run recomputes "
                          "without it", PredictionCacheWarning, stacklevel=3)
            self._connection = None

    def _intact(self) -> bool:
        """Whether another process already rebuilt the file (checked only after an error)."""
        try:
            connection = self._open()
        except sqlite3.DatabaseError:
            return False
        try:
            return bool(connection.execute("PRAGMA quick_check").fetchone() == ("ok",))
        except sqlite3.DatabaseError:
            return False
        finally:
            connection.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, ScoreResult | GenerateResult]:
        found: dict[str, ScoreResult | GenerateResult] = {}
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), 500):  # stay under SQLite's bound-parameter limit
                if self._connection is None:
                    return {}
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._connection.execute(f"SELECT key, value FROM predictions WHERE key IN ({marks})", chunk)
                for key, value in rows:
                    try:
                        found[key] = _decode(value)
                    except (ValueError, KeyError, TypeError):
                        continue  # a damaged entry is recomputed, never trusted
        except sqlite3.DatabaseError as error:
            self._recover(error)
            return {}
        return found

    def put_many(self, entries: Sequence[tuple[str, ScoreResult | GenerateResult]]) -> None:
        now = time.time()
        try:
            if self._connection is not None:
                with self._connection:
                    self._connection.execute("BEGIN")
                    self._connection.executemany(
                        "INSERT OR REPLACE INTO predictions (key, value, created) VALUES (?, ?, ?)",
                        [(key, _encode(result), now) for key, result in entries],
                    )
        except sqlite3.DatabaseError as error:
            self._recover(error)

    def remember_backend(self, namespace: str, info: dict[str, Any]) -> None:
        """What produced this namespace's entries, so a fully cached re-run can still report it."""
        try:
            if self._connection is not None:
                self._connection.execute("INSERT OR REPLACE INTO backends (namespace, info) VALUES (?, ?)",
                                         (namespace, json.dumps(info)))
        except sqlite3.DatabaseError as error:
            self._recover(error)

    def backend_info(self, namespace: str) -> dict[str, Any] | None:
        try:
            if self._connection is None:
                return None
            row = self._connection.execute("SELECT info FROM backends WHERE namespace = ?", (namespace,)).fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, ValueError) as error:
            if isinstance(error, sqlite3.DatabaseError):
                self._recover(error)
            return None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
