"""A JSON-over-HTTP client with bounded retries, on the standard library only (urllib).

Connection errors, timeouts, 429 and 5xx answers are retried with exponential back-off (a
`Retry-After` header is honoured up to the cap); every other 4xx is the caller's mistake and is
raised at once with the server's own message. A server that still has not answered after the last
attempt is `ServerDown`, and the client then refuses further requests at once: a server that stays
down fails what is left with one message, instead of every request waiting out its own retries.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medgate.backends.base import BackendUnavailable

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ServerError(BackendUnavailable):
    """The server could not be used for a request (the message says why; no traceback needed)."""


class ServerDown(ServerError):
    """No usable answer after every attempt (connection refused or reset, timeouts, 429, 5xx)."""


class ServerRejected(ServerError):
    """A 4xx answer other than 429: retrying the same request cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerProtocolError(ServerError):
    """A 2xx answer that is not the JSON the protocol promises."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries per request, the first included
    first_delay: float = 0.5  # seconds before the second try; doubles after each failure
    max_delay: float = 8.0
    timeout: float = 120.0  # seconds per try (connect and each read)

    def delay(self, failures: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.first_delay * 2 ** (failures - 1))
        return min(self.max_delay, max(backoff, retry_after or 0.0))


def redact_url(url: str) -> str:
    """The URL without user, password, query or fragment: what a report or a message may show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the back-off applies


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"


class JsonClient:
    """Thread-safe: one client serves every thread of a worker's request pool."""

    def __init__(self, root: str, api_key: str | None, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = root.rstrip("/")
        self.shown_root = redact_url(self.root)
        self.policy = policy
        self._api_key = api_key
        self._sleep = sleep
        host = urllib.parse.urlsplit(self.root).hostname or ""
        # A proxy from the environment must not capture a server on this machine.
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)
        self._down: str | None = None
        self._lock = threading.Lock()
        self.retries = 0  # failed tries that were retried, over the client's life

    def get(self, path: str) -> Any:
        return self.request("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        if self._down is not None:
            raise ServerDown(f"{self._down} (given up earlier in this process; not retried)")
        url = self.root + path
        shown = f"{method} {self.shown_root}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        started = time.monotonic()
        last = ""
        for attempt in range(1, self.policy.attempts + 1):
            if attempt > 1 and self._down is not None:  # another thread has given up meanwhile
                raise ServerDown(self._down)
            retry_after = None
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                deadline = time.monotonic() + self.policy.timeout
                with self._opener.open(request, timeout=self.policy.timeout) as response:
                    raw = _read_by(response, deadline)
            except urllib.error.HTTPError as error:
                detail = _error_detail(error)
                if error.code != 429 and error.code < 500:
                    raise ServerRejected(f"{shown} answered HTTP {error.code}: {detail}", error.code) from None
                last, retry_after = f"HTTP {error.code}: {detail}", _retry_after(error.headers)
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                last = _describe(error)
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise ServerProtocolError(f"{shown} answered with something that is not JSON: "
                                              f"{raw[:200]!r}") from None
            if attempt < self.policy.attempts:
                with self._lock:
                    self.retries += 1
                self._sleep(self.policy.delay(attempt, retry_after))
        message = (f"{shown}: no usable answer after {self.policy.attempts} attempts over "
                   f"{time.monotonic() - started:.1f} s (timeout {self.policy.timeout:g} s each; last: {last})")
        self._down = message
        raise ServerDown(message)


MAX_ANSWER_BYTES = 256 << 20  # far above any scoring or generation answer; a bound on a runaway body


def _read_by(response: Any, deadline: float) -> bytes:
    """The whole body, or TimeoutError once `deadline` passes: the socket timeout bounds each read
    only, so a server that drips a byte at a time would otherwise hold a request for ever."""
    sock = getattr(getattr(response.fp, "raw", None), "_sock", None)  # the socket, to shrink its timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not arrive whole within the timeout")
        if sock is not None:
            sock.settimeout(remaining)
        chunk = response.read1(1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise http.client.HTTPException(f"the answer is larger than {MAX_ANSWER_BYTES >> 20} MiB")
        chunks.append(chunk)


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own explanation, short: OpenAI-style servers put it in error.message."""
    try:
        raw = error.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace") or str(error.reason)
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(parsed.get("message"), str):
            return parsed["message"][:300]
    return json.dumps(parsed)[:300]
