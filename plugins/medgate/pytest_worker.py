"""The worker side of a medgate pytest session under xdist: what it tells the controller at the end.

Case records travel on each test report as it is made; this plugin adds, once the worker's
session ends, the `WorkerPayload`: the model and backend this worker used, the gate cases it
collected and left to the controller, and why the model could not be loaded, if it could not.
"""

from __future__ import annotations

from typing import Any

import pytest

from medgate.pytest_session import MedgateState
from medgate.worker_payload import GateDescriptor, WorkerPayload, publish


class MedgateWorker:
    def __init__(self, config: pytest.Config, state: MedgateState) -> None:
        self.config = config
        self.state = state
        self.gates: list[GateDescriptor] = []  # collected here, evaluated by the controller

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
        if workeroutput is None:
            return
        worker = self.state.worker
        publish(workeroutput, WorkerPayload(manifest=worker.predictor.manifest() if worker else {},
                                            gates=tuple(self.gates),
                                            model_error=worker.model_error if worker else None))
