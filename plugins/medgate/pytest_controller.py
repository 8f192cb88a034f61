"""The controller side of a medgate pytest session (also the single process without xdist).

It learns which cases the run set out to answer (from its own items, or from the node ids xdist
workers collected, matched against the run plan), merges each case record as its test report
arrives, takes each worker's `WorkerPayload` in `pytest_testnodedown`, replays the gate cases
after an xdist run, and writes the report from `pytest_sessionfinish`, the one place every ending
passes through: a pass, failed gates, Ctrl-C, SIGTERM, dead workers, a model that did not load.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from medgate.compare import (
    RegressionCell,
    RegressionVerdict,
    ReportError,
    evaluate_regression,
    gating_nothing,
    load_report,
    regression_cells,
    resolve_report,
    save_baseline,
)
from medgate.compare.live import LiveComparison
from medgate.gates import GateError, GateRecord, GateVerdict, evaluate
from medgate.interrupts import signals_held
from medgate.metrics import CaseRecord
from medgate.perturbations import get as get_perturbation
from medgate.pytest_session import (
    CASE_PROPERTY,
    GATE_PROPERTY,
    AnyGateCell,
    MedgateState,
    gate_cell_from_descriptor,
    user_property,
)
from medgate.pytest_terminal import summarise
from medgate.report import build_report, report_status, write_json_atomic
from medgate.report.manifest import build_manifest, new_run_id
from medgate.report.readable import write_readable_outputs
from medgate.run import ControllerSide
from medgate.worker_payload import GateDescriptor, PayloadError, received
from medgate.xdist_scheduling import case_id_of


class MedgateController:
    def __init__(self, config: pytest.Config, state: MedgateState) -> None:
        self.config = config
        self.state = state
        self.side = ControllerSide()
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.started = time.perf_counter()
        self.run_id = new_run_id(self.started_at, state.options.model.alias)
        self.baseline: LiveComparison | None = None
        self.active = False  # this session ran medgate cases or gates: it owes a report
        self.xdist = False
        self.crash_items: dict[str, str] = {}  # worker id -> the case it was running when it died
        self.report_path: Path | None = None
        self.outputs: list[Path] = []
        self.gates: list[GateRecord] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []  # what kept the run from doing its work (also in the report)
        self.output_errors: list[str] = []  # what went wrong writing outputs (terminal only)
        self.baseline_saved: Path | None = None
        self.comparison: dict[str, Any] | None = None
        self.token_work: dict[str, Any] | None = None  # the manifest's, for the terminal

    # -- set-up ---------------------------------------------------------------------------------------

    def load_baseline(self, rootpath: Path) -> None:
        """Read the --compare report up front, so a wrong name or a broken file is a usage error."""
        if self.state.options.compare is None:
            return
        path = resolve_report(self.state.options.compare, rootpath, self.state.options.model.alias)
        self.baseline = LiveComparison(load_report(path), path)

    def expect(self, case_ids: Sequence[str]) -> None:
        """Without xdist: the cases this session will run, known once collection is done."""
        self.side.expected = list(case_ids)
        self.active = self.active or bool(case_ids)

    def gates_collected(self) -> None:
        self.active = True

    # -- gates ----------------------------------------------------------------------------------------

    def current_comparison(self) -> dict[str, Any]:
        """The comparison so far, with what the manifest will say about perturbations and seed."""
        assert self.baseline is not None
        options = self.state.options
        manifest = {"perturbations": [get_perturbation(name).definition() for name in options.perturbations],
                    "seed": options.seed, "model": {"alias": options.model.alias}}
        return self.baseline.result(self.side.ordered_records(), manifest)

    def evaluate_gate(self, cell: AnyGateCell) -> GateVerdict | RegressionVerdict:
        if isinstance(cell, RegressionCell):
            return evaluate_regression(cell, self.current_comparison())
        return evaluate(cell, self.side.metric_index())

    # -- merging --------------------------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = user_property(report, CASE_PROPERTY)
        if record is not None:
            self.side.add_record(record)
        verdict = user_property(report, GATE_PROPERTY)
        if verdict is not None:
            self.side.gate_results[report.nodeid] = verdict

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Every worker collects the same ids; the first to finish tells which of them are cases."""
        self.xdist = True
        if self.side.expected:
            return
        self.state.plan.load()
        if self.state.plan.failure:
            return
        planned = {case.case_id for case in self.state.plan.cases}
        self.expect([case_id for case_id in map(case_id_of, ids) if case_id in planned])

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        node = getattr(report, "node", None)
        worker_id = getattr(getattr(node, "gateway", None), "id", None) or "?"
        self.crash_items[worker_id] = crashitem

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.xdist = True
        worker_id = node.gateway.id
        try:
            payload = received(node)
        except PayloadError as problem:
            payload, error = None, error or str(problem)
        if error is not None or payload is None:
            self.side.crashed_workers[worker_id] = str(error or "no output from the worker")
        if payload is None:
            return
        self.side.workers[worker_id] = dict(payload.manifest)
        if payload.model_error:
            self.side.model_errors[worker_id] = payload.model_error
        for descriptor in payload.gates:
            self.side.gate_descriptors.setdefault(descriptor.nodeid, descriptor)
        if payload.gates:
            self.gates_collected()

    # -- gates after an xdist run ---------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        result = yield
        if self.xdist and self.side.gate_descriptors:
            session.testscollected += len(self.side.gate_descriptors)  # keeps progress at 100%
            self._replay_gates()
        return result

    def _replay_gates(self) -> None:
        """Evaluate the gates the workers left out and log them as ordinary test reports."""
        hook = self.config.hook
        for nodeid, descriptor in self.side.gate_descriptors.items():
            verdict: GateVerdict | RegressionVerdict | GateError
            try:
                verdict = self.evaluate_gate(gate_cell_from_descriptor(dict(descriptor.cell)))
            except Exception as error:  # noqa: BLE001 - a broken gate fails as a test, not as an INTERNALERROR
                verdict = GateError(f"medgate could not evaluate this gate: {error!r}")
            hook.pytest_runtest_logstart(nodeid=nodeid, location=descriptor.location)
            for when in ("setup", "call", "teardown"):
                hook.pytest_runtest_logreport(report=_gate_report(descriptor, verdict, when))
            hook.pytest_runtest_logfinish(nodeid=nodeid, location=descriptor.location)

    # -- the report -----------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.xdist:
            self.state.plan.load()  # cached; already built where medgate schedules the groups
        if self.xdist and self.state.plan.failure and session.exitstatus != pytest.ExitCode.USAGE_ERROR:
            # Bad item data stops collection; serially pytest says so with exit 2, and so must -n N.
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        if not self.active:
            return
        with signals_held():  # a second Ctrl-C or SIGTERM must not cut the report in half
            self._finish(session)

    def _finish(self, session: pytest.Session) -> None:
        side = self.side
        interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
        missing = side.missing_cases()
        model_errors = sorted(set(side.model_errors.values()) |
                              ({self.state.worker.model_error} if self.state.worker and
                               self.state.worker.model_error else set()))
        self.errors += [f"the model could not be loaded, so no case ran: {error}" for error in model_errors]
        gates = [verdict for _, verdict in sorted(side.gate_results.items())]
        if not interrupted:
            gates += [verdict.to_dict() for verdict in self._rules_gating_nothing()]
        self.gates = gates
        if session.exitstatus == 0 and (missing or any(g["passed"] is False for g in gates)):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if model_errors:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        status = report_status(int(session.exitstatus), len(missing))
        records = side.ordered_records()
        manifest = build_manifest(self.state, self.config, side, self.run_id, self.started_at, self.started)
        self.token_work = manifest.get("token_work")
        path = self._report_path()
        comparison = self._comparison(records, manifest, status, path)
        if comparison is not None:
            self.warnings += comparison.get("warnings", [])
        document = build_report(run_id=self.run_id, status=status, manifest=manifest, cases=records,
                                missing_cases=missing, metrics=side.metrics(), gates=gates, comparison=comparison,
                                warnings=self.warnings, errors=self.errors)
        try:
            write_json_atomic(document, path)
        except OSError as error:
            self.errors.append(f"could not write the report to {path}: {error}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            return
        self.report_path = path
        baseline = self.baseline.baseline if self.baseline is not None else None
        self.outputs, errors = write_readable_outputs(document, path, baseline)
        self.output_errors += errors
        if self.state.options.save_baseline:
            self._save_baseline(session, document)

    def _rules_gating_nothing(self) -> list[RegressionVerdict]:
        """A --fail-on-regression rule with no block in this run would pass on nothing: it fails."""
        if self.state.plan.failure:
            return []
        return [gating_nothing(rule, f"this run has no {rule.metric} block to compare")
                for rule in self.state.options.regression_rules
                if not regression_cells([rule], self.state.plan.combos)]

    def _comparison(self, records: list[CaseRecord], manifest: dict[str, Any], status: str,
                    path: Path) -> dict[str, Any] | None:
        if self.baseline is None:
            return None
        head = {"run_id": self.run_id, "status": status, "manifest": manifest}
        try:
            self.comparison = self.baseline.final(records, head, path)
        except Exception as error:  # noqa: BLE001 - the report of the run itself must still be written
            self.output_errors.append(f"could not compare with {self.baseline.baseline_path}: {error!r}")
            return None
        return self.comparison

    def _save_baseline(self, session: pytest.Session, document: dict[str, Any]) -> None:
        name = self.state.options.save_baseline
        assert name is not None
        try:
            self.baseline_saved = save_baseline(document, project_root(self.config), self.state.options.model.alias,
                                                name)
        except (ReportError, OSError) as error:
            self.output_errors.append(f"baseline not saved: {error}")
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _report_path(self) -> Path:
        if self.state.options.report is not None:
            return self.state.options.report
        return project_root(self.config) / "reports" / f"{self.run_id}.json"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.active:
            summarise(self, terminalreporter)


def project_root(config: pytest.Config) -> Path:
    """Where reports/ and reports/baselines/ live: the folder of the configuration file.

    pytest's rootdir also follows path-like arguments when no configuration file sits above them,
    so a separate `--data-dir /x` would otherwise put reports (and look for baselines) under /x.
    """
    if config.option.rootdir or config.inipath is None:
        return config.rootpath if config.option.rootdir else config.invocation_params.dir
    return config.inipath.parent


def _gate_report(descriptor: GateDescriptor, verdict: GateVerdict | RegressionVerdict | GateError,
                 when: Literal["setup", "call", "teardown"]) -> pytest.TestReport:
    outcome: Literal["passed", "failed", "skipped"] = "passed"
    longrepr: str | tuple[str, int, str] | None = None
    properties: list[tuple[str, object]] = []
    location = descriptor.location
    if when == "call" and isinstance(verdict, GateError):
        outcome, longrepr = "failed", verdict.message
    elif when == "call" and not isinstance(verdict, GateError):
        properties = [(GATE_PROPERTY, verdict.to_dict())]
        if verdict.passed is None:
            outcome, longrepr = "skipped", (str(location[0]), int(location[1] or 0) + 1,
                                            f"Skipped: {verdict.message}")
        elif not verdict.passed:
            outcome, longrepr = "failed", verdict.message
    now = time.time()
    return pytest.TestReport(nodeid=descriptor.nodeid, location=location,
                             keywords=dict.fromkeys(descriptor.keywords, 1), outcome=outcome, longrepr=longrepr,
                             when=when, sections=[], duration=0.0, start=now, stop=now, user_properties=properties)
