"""The controller side of a medgate pytest session (also the single process without xdist).

Registered as a plugin object at configure time: it merges case records from test reports,
collects worker payloads in `pytest_testnodedown`, replays gate cases after an xdist run, writes
the report at session end and prints the gate table.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from medgate.cases import Case
from medgate.compare import (
    RegressionCell,
    RegressionVerdict,
    ReportError,
    evaluate_regression,
    load_report,
    regression_cells,
    resolve_report,
    save_baseline,
)
from medgate.compare.live import LiveComparison
from medgate.compare.regression import cell_name, describe_change
from medgate.gates import GateCell, GateVerdict, evaluate
from medgate.options import RunOptions
from medgate.perturbations import get as get_perturbation
from medgate.report import build_report, report_status, write_json_atomic
from medgate.report.manifest import build_manifest, truncation_by_dataset
from medgate.report.readable import write_readable_outputs
from medgate.run import ControllerSide, RunPlan, WorkerSide

CASE_PROPERTY = "medgate_case"
GATE_PROPERTY = "medgate_gate"
WORKER_OUTPUT = "medgate"
REGRESSION_GATE = "regression"  # @pytest.mark.gate("regression"): one case per --fail-on-regression block
AnyGateCell = GateCell | RegressionCell


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
        self.comparison: LiveComparison | None = None  # with --compare, on the controller only

    def worker_side(self) -> WorkerSide:
        if self.worker is None:
            self.worker = WorkerSide(self.options)
        return self.worker

    def load_baseline(self, rootpath: Path) -> None:
        """Read the --compare report up front, so a wrong name or a broken file is a usage error."""
        if self.options.compare is None:
            return
        path = resolve_report(self.options.compare, rootpath, self.options.model.alias)
        self.comparison = LiveComparison(load_report(path), path)

    def gate_cells(self, metric: str) -> list[Any]:
        if self.plan.failure:
            return []
        if metric == REGRESSION_GATE:
            return regression_cells(self.options.regression_rules, self.plan.combos)
        return self.plan.gate_cells(metric)

    def current_comparison(self) -> dict[str, Any]:
        """The comparison so far, with what the manifest will say about perturbations and seed."""
        assert self.comparison is not None
        manifest = {"perturbations": [get_perturbation(name).definition() for name in self.options.perturbations],
                    "seed": self.options.seed, "model": {"alias": self.options.model.alias}}
        return self.comparison.result(self.controller.ordered_records(self.case_nodeids), manifest)

    def evaluate_gate(self, cell: AnyGateCell) -> GateVerdict | RegressionVerdict:
        if isinstance(cell, RegressionCell):
            return evaluate_regression(cell, self.current_comparison())
        return evaluate(cell, self.controller.metric_index())


def gate_descriptor_cell(cell: AnyGateCell) -> dict[str, Any]:
    return {"kind": REGRESSION_GATE if isinstance(cell, RegressionCell) else "threshold", **cell.to_dict()}


def gate_cell_from_descriptor(described: dict[str, Any]) -> AnyGateCell:
    fields = {k: v for k, v in described.items() if k != "kind"}
    return RegressionCell(**fields) if described.get("kind") == REGRESSION_GATE else GateCell(**fields)


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("mcqa_case") if callspec else None
    return value if isinstance(value, Case) else None


def gate_of(item: pytest.Item) -> AnyGateCell | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("gate") if callspec else None
    return value if isinstance(value, (GateCell, RegressionCell)) else None


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
        self.crash_items: dict[str, str] = {}  # worker id -> the case it was running when it died
        self.missing: list[str] = []
        self.outputs: list[Path] = []
        self.output_errors: list[str] = []
        self.baseline_saved: Path | None = None
        self.comparison: dict[str, Any] | None = None

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
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        node = getattr(report, "node", None)
        worker_id = getattr(getattr(node, "gateway", None), "id", None) or "?"
        self.crash_items[worker_id] = crashitem

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
        for nodeid, descriptor in self.state.controller.gate_descriptors.items():
            verdict: GateVerdict | RegressionVerdict | str
            try:
                verdict = self.state.evaluate_gate(gate_cell_from_descriptor(descriptor["cell"]))
            except Exception as error:  # noqa: BLE001 - a broken gate fails as a test, not as an INTERNALERROR
                verdict = f"medgate could not evaluate this gate: {error!r}"
            location = tuple(descriptor["location"])
            hook.pytest_runtest_logstart(nodeid=nodeid, location=location)
            for when in ("setup", "call", "teardown"):
                hook.pytest_runtest_logreport(report=self._gate_report(nodeid, location, descriptor, verdict, when))
            hook.pytest_runtest_logfinish(nodeid=nodeid, location=location)

    @staticmethod
    def _gate_report(nodeid: str, location: Any, descriptor: dict[str, Any],
                     verdict: GateVerdict | RegressionVerdict | str, when: str) -> pytest.TestReport:
        outcome, longrepr, properties = "passed", None, []
        if when == "call" and isinstance(verdict, str):
            outcome, longrepr = "failed", verdict
        elif when == "call":
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
        missing = self.missing = controller.missing_cases(self.state.case_nodeids)
        if missing and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        status = report_status(int(session.exitstatus), len(missing))
        records = controller.ordered_records(self.state.case_nodeids)
        gates = [verdict for _, verdict in sorted(controller.gate_results.items())]
        self.gates = gates
        manifest = build_manifest(self.state, self.config, controller, self.started_at, self.started)
        path = self._report_path(manifest["run_id"])
        comparison = self._comparison(records, manifest, status, path)
        document = build_report(run_id=manifest["run_id"], status=status, manifest=manifest, cases=records,
                                missing_cases=missing, metrics=controller.metrics(), gates=gates,
                                comparison=comparison)
        try:
            write_json_atomic(document, path)
            self.report_path = path
        except OSError as error:
            self.report_error = f"could not write the report to {path}: {error}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR if exitstatus == 0 else session.exitstatus
            return
        baseline = self.state.comparison.baseline if self.state.comparison is not None else None
        self.outputs, errors = write_readable_outputs(document, path, baseline)
        self.output_errors += errors
        if self.state.options.save_baseline:
            self._save_baseline(session, document)

    def _comparison(self, records: list[dict[str, Any]], manifest: dict[str, Any], status: str,
                    path: Path) -> dict[str, Any] | None:
        if self.state.comparison is None:
            return None
        head = {"run_id": manifest["run_id"], "status": status, "manifest": manifest}
        try:
            self.comparison = self.state.comparison.final(records, head, path)
        except Exception as error:  # noqa: BLE001 - the report of the run itself must still be written
            self.output_errors.append(f"could not compare with {self.state.comparison.baseline_path}: {error!r}")
            return None
        return self.comparison

    def _save_baseline(self, session: pytest.Session, document: dict[str, Any]) -> None:
        name = self.state.options.save_baseline
        assert name is not None
        try:
            self.baseline_saved = save_baseline(document, self.config.rootpath, self.state.options.model.alias, name)
        except (ReportError, OSError) as error:
            self.output_errors.append(f"baseline not saved: {error}")
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

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
        total = len(self.state.case_nodeids)
        for worker, error in sorted(controller.crashed_workers.items()):
            running = self.crash_items.get(worker)
            during = f" while running {running.split('::')[-1]}" if running else ""
            write(f"worker {worker} died ({error}){during}; the run is incomplete: {len(self.missing)} of {total} "
                  "case(s) have no result (listed in the report's missing_cases)", red=True)
        if self.missing and not controller.crashed_workers:
            write(f"the run is incomplete: {len(self.missing)} of {total} case(s) have no result", red=True)
        records = controller.records
        if records:
            correct = sum(1 for r in records.values() if r.get("correct"))
            write(f"cases: {len(records)} answered, {correct} correct ({correct / len(records):.1%})")
        for dataset, entry in sorted(truncation_by_dataset(records.values()).items()):
            write(f"{dataset}: {entry['cases']} case(s) truncated from the left to fit the model's context "
                  f"(up to {entry['max_tokens_dropped']} tokens dropped)", yellow=True)
        thresholds = [g for g in self.gates if g.get("kind") != REGRESSION_GATE]
        regressions = [g for g in self.gates if g.get("kind") == REGRESSION_GATE]
        if thresholds:
            write(f"{'gate':<58} {'value':>7} {'bound':>12} {'n':>6}  result")
            for gate in thresholds:
                value = "-" if gate["value"] is None else f"{gate['value']:.3f}"
                bound = f"{'>=' if gate['bound'] == 'min' else '<='} {gate['threshold']:.3f}"
                write(f"{gate['name']:<58} {value:>7} {bound:>12} {gate['n']:>6}  {_result(gate)}",
                      red=gate["passed"] is False, green=gate["passed"] is True)
        if self.comparison is not None:
            self._summarise_comparison(write)
        gated = {g["metric"] for g in regressions}
        for rule in self.state.options.regression_rules:
            if rule.metric not in gated:
                write(f"--fail-on-regression {rule.expression} gates nothing: this run has no {rule.metric} cells",
                      yellow=True)
        if regressions:
            width = max(46, *(len(g["name"]) for g in regressions))
            write(f"{'regression gate':<{width}} {'baseline':>8} {'current':>8} {'change':>9} {'p (Holm)':>9}  result")
            for gate in regressions:
                change = "-" if gate["value"] is None else f"{gate['value'] * 100:+.1f}pp"
                p_adjusted = "-" if gate["p_adjusted"] is None else f"{gate['p_adjusted']:.2g}"
                old = "-" if gate["baseline"] is None else f"{gate['baseline']:.3f}"
                new = "-" if gate["current"] is None else f"{gate['current']:.3f}"
                write(f"{gate['name']:<{width}} {old:>8} {new:>8} {change:>9} {p_adjusted:>9}  {_result(gate)}",
                      red=gate["passed"] is False, green=gate["passed"] is True)
        if self.report_path is not None:
            write(f"report: {self.report_path}")
            if self.outputs:
                write(f"readable: {', '.join(str(p) for p in self.outputs)}")
        if self.baseline_saved is not None:
            write(f"baseline saved: {self.baseline_saved}")
        for message in ([self.report_error] if self.report_error else []) + self.output_errors:
            write(message, red=True)

    def _summarise_comparison(self, write: Any) -> None:
        comparison = self.comparison
        assert comparison is not None
        cases, flips = comparison["cases"], comparison["flips"]
        baseline = comparison["baseline"]
        write(f"compared with {baseline['run_id']} ({baseline['path']}): {cases['common']} shared cases, "
              f"{len(cases['only_in_baseline'])} only in the baseline, {len(cases['only_in_current'])} only in this "
              f"run; {flips['correct_to_wrong']} correct -> wrong, {flips['wrong_to_correct']} wrong -> correct"
              + ("; same checkpoint" if comparison["same_checkpoint"] else ""))
        for block in comparison["incomparable"]:
            where = f"{block['dataset']}/{block['perturbation']}/{block['prompt']}/{block['mode']}"
            write(f"  incomparable {where}: {'; '.join(block['reasons'])}", yellow=True)
        significant = [c for c in comparison["cells"] if c.get("significant")]
        method = comparison["method"]
        write(f"  {len(significant)} of {method['cells_tested']} cells changed significantly "
              f"(exact McNemar, Holm, alpha {method['alpha']})")
        for cell in sorted(significant, key=lambda c: c["delta"])[:10]:
            write(f"  {cell_name(cell)}: {describe_change(cell)}", red=cell["delta"] < 0, green=cell["delta"] > 0)


def _result(gate: dict[str, Any]) -> str:
    return {True: "PASS", False: "FAIL", None: "SKIP"}[gate["passed"]]
