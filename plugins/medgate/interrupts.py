"""SIGTERM ends a run the way Ctrl-C does, so that the report is still written.

CI runners cancel a job with SIGTERM, whose default action ends the process at once: no
`finally`, no session finish, no report. Raising KeyboardInterrupt from the handler lets pytest
(and xdist's controller loop) unwind as after Ctrl-C, with exit status 2 and the report's status
`interrupted`. While the report is being written, further signals are held back instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"medgate: received {signal.Signals(signum).name}")


class TerminateAsInterrupt:
    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        # Only the main thread may set handlers; elsewhere (an embedding host) leave signals alone.
        if threading.current_thread() is not threading.main_thread() or self._installed:
            return
        self._previous = signal.signal(signal.SIGTERM, _interrupt)
        self._installed = True

    def restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM (the run is already ending) until the block is done."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signals}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
