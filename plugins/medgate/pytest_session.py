"""The controller side of a medgate pytest session (also the single process without xdist).

Registered as a plugin object at configure time: it merges case records from test reports,
collects worker payloads in `pytest_testnodedown`, replays gate cases after an xdist run, writes
the report at session end and prints the gate table.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from medgate.cases import Case
from medgate.gates import GateCell, GateVerdict, evaluate
from medgate.options import RunOptions
from medgate.report import build_report, report_status, write_json_atomic
from medgate.report.manifest import build_manifest, truncation_by_dataset
from medgate.run import ControllerSide, RunPlan, WorkerSide

CASE_PROPERTY = "medgate_case"
GATE_PROPERTY = "medgate_gate"
WORKER_OUTPUT = "medgate"


class MedgateState:
    def __init__(self, options: RunOptions, is_worker: bool) -> None:
        self.options = options
        self.plan = RunPlan(options)
        self.is_worker = is_worker
        self.worker: WorkerSide | None = None
        self.controller = ControllerSide()
        self.active = False  # medgate cases or gates were collected in this session
        self.case_nodeids: list[str] = []
        self.case_indices: list[int] = []
        self.gate_descriptors: list[dict[str, Any]] = []

    def worker_side(self) -> WorkerSide:
        if self.worker is None:
            self.worker = WorkerSide(self.options)
        return self.worker


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("mcqa_case") if callspec else None
    return value if isinstance(value, Case) else None


def gate_of(item: pytest.Item) -> GateCell | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("gate") if callspec else None
    return value if isinstance(value, GateCell) else None


def _property(report: pytest.TestReport, name: str) -> Any:
    for key, value in report.user_properties:
        if key == name:
            return value
    return None


class MedgateSession:
    def __init__(self, config: pytest.Config, state: MedgateState) -> None:
        self.config = config
        self.state = state
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.started = time.perf_counter()
        self.collected_ids: list[str] = []
        self.xdist = False
        self.report_path: Path | None = None
        self.report_error: str | None = None
        self.gates: list[dict[str, Any]] = []

    # -- merging --------------------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        controller = self.state.controller
        record = _property(report, CASE_PROPERTY)
        if record is not None:
            controller.add_record(report.nodeid, record)
        verdict = _property(report, GATE_PROPERTY)
        if verdict is not None:
            controller.gate_results[report.nodeid] = verdict
        if report.when == "call" or (report.when == "setup" and not report.passed):
            controller.reported.add(report.nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.xdist = True
        if not self.collected_ids:
            self.collected_ids = list(ids)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.xdist = True
        worker_id = node.gateway.id
        payload = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
        if error is not None or payload is None:
            self.state.controller.crashed_workers[worker_id] = str(error or "no output from the worker")
        if payload is None:
            return
        self.state.active = self.state.active or payload["active"]
        self.state.controller.workers[worker_id] = payload["manifest"]
        if not self.state.case_nodeids and self.collected_ids:
            self.state.case_nodeids = [self.collected_ids[i] for start, stop in payload["case_ranges"]
                                       for i in range(start, stop)]
        for descriptor in payload["gates"]:
            self.state.controller.gate_descriptors.setdefault(descriptor["nodeid"], descriptor)

    # -- gates after an xdist run ---------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        result = yield
        if self.xdist and self.state.controller.gate_descriptors:
            session.testscollected += len(self.state.controller.gate_descriptors)  # keeps progress at 100%
            self._replay_gates()
        return result

    def _replay_gates(self) -> None:
        """Evaluate the gates the workers left out and log them as ordinary test reports."""
        hook = self.config.hook
        metrics = self.state.controller.metric_index()
        for nodeid, descriptor in self.state.controller.gate_descriptors.items():
            cell = GateCell(**descriptor["cell"])
            verdict = evaluate(cell, metrics)
            location = tuple(descriptor["location"])
            hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
            for when in ("setup", "call", "teardown"):
                hook.pytest_runtest_logreport(report=self._gate_report(nodeid, location, descriptor, verdict, when))
            hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)

    @staticmethod
    def _gate_report(nodeid: str, location: Any, descriptor: dict[str, Any], verdict: GateVerdict,
                     when: str) -> pytest.TestReport:
        outcome, longrepr, properties = "passed", None, []
        if when == "call":
            properties = [(GATE_PROPERTY, verdict.to_dict())]
            if verdict.passed is None:
                outcome, longrepr = "skipped", (str(location[0]), int(location[1] or 0) + 1,
                                                f"Skipped: {verdict.message}")
            elif not verdict.passed:
                outcome, longrepr = "failed", verdict.message
        now = time.time()
        return pytest.TestReport(nodeid=nodeid, location=location, keywords=dict.fromkeys(descriptor["keywords"], 1),
                                 outcome=outcome, longrepr=longrepr, when=when, sections=[], duration=0.0,
                                 start=now, stop=now, user_properties=properties)

    # -- the report -----------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.state.active:
            return
        controller = self.state.controller
        if not self.xdist and not self.state.case_nodeids:
            return
        missing = controller.missing_cases(self.state.case_nodeids)
        if missing and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        status = report_status(int(session.exitstatus), len(missing))
        records = controller.ordered_records(self.state.case_nodeids)
        gates = [verdict for _, verdict in sorted(controller.gate_results.items())]
        self.gates = gates
        manifest = build_manifest(self.state, self.config, controller, self.started_at, self.started)
        document = build_report(run_id=manifest["run_id"], status=status, manifest=manifest, cases=records,
                                missing_cases=missing, metrics=controller.metrics(), gates=gates)
        path = self._report_path(manifest["run_id"])
        try:
            write_json_atomic(document, path)
            self.report_path = path
        except OSError as error:
            self.report_error = f"could not write the report to {path}: {error}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR if exitstatus == 0 else session.exitstatus

    def _report_path(self, run_id: str) -> Path:
        if self.state.options.report is not None:
            return self.state.options.report
        return self.config.rootpath / "reports" / f"{run_id}.json"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.state.active:
            return
        write = terminalreporter.write_line
        terminalreporter.section("medgate")
        controller = self.state.controller
        for worker, error in sorted(controller.crashed_workers.items()):
            lost = controller.missing_cases(self.state.case_nodeids)
            write(f"worker {worker} died ({error}); {len(lost)} case(s) have no result, the run is incomplete",
                  red=True)
        records = controller.records
        if records:
            correct = sum(1 for r in records.values() if r.get("correct"))
            write(f"cases: {len(records)} answered, {correct} correct ({correct / len(records):.1%})")
        for dataset, entry in sorted(truncation_by_dataset(records.values()).items()):
            write(f"{dataset}: {entry['cases']} case(s) truncated from the left to fit the model's context "
                  f"(up to {entry['max_tokens_dropped']} tokens dropped)", yellow=True)
        if self.gates:
            write(f"{'gate':<58} {'value':>7} {'bound':>12} {'n':>6}  result")
            for gate in self.gates:
                value = "-" if gate["value"] is None else f"{gate['value']:.3f}"
                bound = f"{'>=' if gate['bound'] == 'min' else '<='} {gate['threshold']:.3f}"
                result = {True: "PASS", False: "FAIL", None: "SKIP"}[gate["passed"]]
                write(f"{gate['name']:<58} {value:>7} {bound:>12} {gate['n']:>6}  {result}",
                      red=gate["passed"] is False, green=gate["passed"] is True)
        if self.report_path is not None:
            write(f"report: {self.report_path}")
        if self.report_error:
            write(self.report_error, red=True)
