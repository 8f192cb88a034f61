"""What both sides of a medgate pytest session share: the run state and how its items are read.

The worker side (pytest_worker.py, also the single process without xdist) predicts and records
cases; the controller side (pytest_controller.py, also the single process without xdist) merges
what comes back and writes the report. Between xdist processes only test reports and one
`WorkerPayload` (worker_payload.py) travel.
"""

from __future__ import annotations

from typing import Any

import pytest

from medgate.cases import Case
from medgate.compare import RegressionCell, regression_cells
from medgate.gates import GateCell
from medgate.options import RunOptions
from medgate.run import RunPlan, WorkerPlace, WorkerSide
from medgate.worker_payload import GateDescriptor

CASE_PROPERTY = "medgate_case"
GATE_PROPERTY = "medgate_gate"
REGRESSION_GATE = "regression"  # @pytest.mark.gate("regression"): one case per --fail-on-regression block
AnyGateCell = GateCell | RegressionCell


class MedgateState:
    def __init__(self, options: RunOptions, workerinput: dict[str, Any] | None) -> None:
        self.options = options
        self.plan = RunPlan(options)
        self.is_worker = workerinput is not None
        self.place = WorkerPlace.from_workerinput(workerinput)
        self.worker: WorkerSide | None = None
        self.active = False  # medgate cases or gates were collected in this process

    def worker_side(self) -> WorkerSide:
        if self.worker is None:
            self.worker = WorkerSide(self.options, self.place)
        return self.worker

    def gate_cells(self, metric: str) -> list[Any]:
        if self.plan.failure:
            return []
        if metric == REGRESSION_GATE:
            return regression_cells(self.options.regression_rules, self.plan.combos)
        return self.plan.gate_cells(metric)


def gate_descriptor_cell(cell: AnyGateCell) -> dict[str, Any]:
    return {"kind": REGRESSION_GATE if isinstance(cell, RegressionCell) else "threshold", **cell.to_dict()}


def gate_cell_from_descriptor(described: dict[str, Any]) -> AnyGateCell:
    fields = {k: v for k, v in described.items() if k != "kind"}
    return RegressionCell(**fields) if described.get("kind") == REGRESSION_GATE else GateCell(**fields)


def gate_descriptor(item: pytest.Item) -> GateDescriptor:
    cell = gate_of(item)
    assert cell is not None
    path, lineno, name = item.location
    return GateDescriptor(item.nodeid, (path, lineno, name), gate_descriptor_cell(cell),
                          tuple(sorted(str(k) for k in item.keywords)))


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("mcqa_case") if callspec else None
    return value if isinstance(value, Case) else None


def gate_of(item: pytest.Item) -> AnyGateCell | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("gate") if callspec else None
    return value if isinstance(value, (GateCell, RegressionCell)) else None


def user_property(report: pytest.TestReport, name: str) -> Any:
    for key, value in report.user_properties:
        if key == name:
            return value
    return None
