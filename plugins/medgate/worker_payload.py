"""What an xdist worker sends its controller when its session ends, as one named, versioned type.

Publishing and merging live side by side here (syrupy's pattern in `session.py`): the worker puts
`WorkerPayload.to_json()` into `config.workeroutput`, the controller reads it back with
`received()` in `pytest_testnodedown`. Case records do not travel here: they ride on each test
report as it arrives, so a worker that dies (and sends nothing) loses none of what it answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WORKEROUTPUT_KEY = "medgate"
PAYLOAD_VERSION = 1


class PayloadError(ValueError):
    pass


@dataclass(frozen=True)
class GateDescriptor:
    """A gate case a worker collected and left to the controller, which evaluates and logs it."""

    nodeid: str
    location: tuple[str, int | None, str]
    cell: Mapping[str, Any]  # the gate cell's fields, with "kind": "threshold" | "regression"
    keywords: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "location": list(self.location), "cell": dict(self.cell),
                "keywords": list(self.keywords)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateDescriptor:
        path, lineno, name = data["location"]
        return cls(data["nodeid"], (path, lineno, name), dict(data["cell"]), tuple(data["keywords"]))


@dataclass(frozen=True)
class WorkerPayload:
    manifest: Mapping[str, Any]  # the model and backend as this worker saw them (Predictor.manifest())
    gates: tuple[GateDescriptor, ...] = ()
    model_error: str | None = None  # why the model could not be loaded, when it could not
    version: int = field(default=PAYLOAD_VERSION)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "manifest": dict(self.manifest),
                "gates": [gate.to_json() for gate in self.gates], "model_error": self.model_error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerPayload:
        version = data.get("version")
        if version != PAYLOAD_VERSION:
            # A worker from another medgate install (e.g. a stale remote environment) would be merged wrongly.
            raise PayloadError(f"medgate worker payload version {version!r}; this controller reads {PAYLOAD_VERSION}")
        return cls(manifest=dict(data.get("manifest") or {}),
                   gates=tuple(GateDescriptor.from_json(g) for g in data.get("gates") or ()),
                   model_error=data.get("model_error"), version=version)


def publish(workeroutput: dict[str, Any], payload: WorkerPayload) -> None:
    """On the worker, at session end: execnet carries only plain JSON-like values."""
    workeroutput[WORKEROUTPUT_KEY] = payload.to_json()


def received(node: Any) -> WorkerPayload | None:
    """On the controller: the payload of a finished worker; None from a worker that crashed."""
    data = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
    return None if data is None else WorkerPayload.from_json(data)
