"""medgate's pytest plugin (registered through the `pytest11` entry point).

- Options are parsed and checked in `pytest_configure`; the run state lives in `config.stash`.
- `mcqa_case` is parametrized with every case; plain `-n N` is switched to `--dist loadgroup`, which
  medgate's scheduler (xdist_scheduling) implements by prediction group, so that each group runs on
  one worker, where the first case to run predicts the whole group in one batched call.
- Two sides, each its own plugin object: the worker side (pytest_worker.py) predicts and sends
  one `WorkerPayload` at the end; the controller side (pytest_controller.py) merges and writes
  the report. Without xdist the one process is both. Each case's record travels on its test
  report (`user_properties`), so what a dead worker answered is kept.
- Gate cases (`@pytest.mark.gate(metric)`) need every worker's results. Without xdist they run for
  real, last. Under xdist the workers leave them out and the controller evaluates them once the
  last worker is done and logs their reports under the same node ids.
- The report is written atomically at session end whatever ended it (SIGTERM is turned into the
  KeyboardInterrupt of Ctrl-C for that); its `status` says what.
"""

from __future__ import annotations

from typing import Any

import pytest

from medgate.backends.http import ServerDown, ServerError
from medgate.cases import Case
from medgate.compare import ReportError
from medgate.interrupts import TerminateAsInterrupt
from medgate.metrics.records import CaseRecord
from medgate.paths import CacheDirError
from medgate.options import OptionError, add_run_arguments, run_options
from medgate.predictor import ModelLoadError
from medgate.pytest_controller import MedgateController, project_root
from medgate.pytest_session import (
    CASE_PROPERTY,
    GATE_PROPERTY,
    AnyGateCell,
    MedgateState,
    case_of,
    gate_descriptor,
    gate_of,
)
from medgate.pytest_worker import MedgateWorker

STATE = pytest.StashKey[MedgateState]()
CONTROLLER = pytest.StashKey[MedgateController]()  # not on xdist workers
WORKER = pytest.StashKey[MedgateWorker]()  # only on xdist workers
SIGNALS = pytest.StashKey[TerminateAsInterrupt]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("medgate", "medgate: clinical language model release gates")
    add_run_arguments(group.addoption)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gate(metric): a release gate evaluated on the merged results of the run")
    if config.option.help:
        # `pytest --help` configures plugins without converting option defaults (`--model` is
        # still the string "tiny"), and runs nothing: there is no run to prepare.
        return
    try:
        state = MedgateState(run_options(config.option), getattr(config, "workerinput", None))
    except (OptionError, CacheDirError) as error:
        raise pytest.UsageError(f"medgate: {error}") from None
    config.stash[STATE] = state
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"  # keep each prediction group on one worker (see xdist_scheduling)
    if getattr(config.option, "dist", "no") == "loadgroup" and getattr(config.option, "maxworkerrestart", "") is None:
        # pytest-xdist 3.8 hangs when it replaces a crashed worker under loadgroup/loadscope
        # (pytest-xdist#1323, #1327, #1378). Without a restart the run ends, and the cases the worker
        # never finished are reported as missing: an incomplete run that fails, never a hang.
        config.option.maxworkerrestart = "0"
    if state.is_worker:
        worker = config.stash[WORKER] = MedgateWorker(config, state)
        config.pluginmanager.register(worker, "medgate-worker")
    else:
        controller = MedgateController(config, state)
        try:
            controller.load_baseline(project_root(config))
        except ReportError as error:
            raise pytest.UsageError(f"medgate: {error}") from None
        if state.options.server is not None and not config.option.collectonly:
            # A wrong server (another model, another tokenizer, nothing listening) is a usage error
            # before any case, not one failure per case.
            from medgate.backends.openai import check_server

            try:
                check_server(state.options.server, state.options.model, state.options.allow_download)
            except Exception as error:  # noqa: BLE001 - whatever stops the check, the message says it
                raise pytest.UsageError(f"medgate: --backend openai: {error}") from None
        config.stash[CONTROLLER] = controller
        config.pluginmanager.register(controller, "medgate-controller")
    signals = config.stash[SIGNALS] = TerminateAsInterrupt()
    signals.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    signals = config.stash.get(SIGNALS, None)
    if signals is not None:
        signals.restore()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under loadgroup (which medgate turns plain -n N into), schedule by prediction group."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return None
    state = config.stash[STATE]
    state.plan.load()
    if state.plan.failure:
        return None  # the workers report the data error while collecting
    from medgate.xdist_scheduling import CaseGroupScheduling

    return CaseGroupScheduling(config, log, {case.case_id: case.group for case in state.plan.cases})


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(STATE, None)
    if state is None:
        return None
    o = state.options
    where = f"server {o.server.base_url}" if o.server is not None else f"device {o.device}"
    lines = [
        f"medgate: model {o.model.alias} ({o.model.kind}), backend {o.backend}, {where}; "
        f"datasets {', '.join(o.datasets)}; perturbations {', '.join(o.perturbations)}; "
        f"prompts {', '.join(o.prompts)}"
    ]
    controller = config.stash.get(CONTROLLER, None)
    if controller is not None and controller.baseline is not None:
        rules = ", ".join(rule.expression for rule in o.regression_rules) or "none"
        baseline = controller.baseline
        status = baseline.baseline.get("status")
        unfinished = f" (the baseline is {status}: see the warning at the end)" if status in (
            "incomplete", "interrupted") else ""
        lines.append(f"medgate: comparing with {baseline.baseline_path}{unfinished}; regression gates: {rules}")
    return lines


# -- collection ---------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[STATE]
    if "mcqa_case" in metafunc.fixturenames:
        cases = _cases_or_collection_error(state)
        # No xdist_group marks: medgate's scheduler reads each case's group from the plan, and a mark
        # per case was a sizeable share of collecting tens of thousands of cases.
        metafunc.parametrize("mcqa_case", cases, ids=[case.case_id for case in cases], indirect=True)
    if "gate" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("gate")
        if marker is None or not marker.args:
            raise pytest.UsageError(f"{metafunc.definition.nodeid} uses `gate` without @pytest.mark.gate(metric)")
        # When the cases could not be built, their module already reports why; gates have nothing to gate.
        cells = state.gate_cells(marker.args[0])
        metafunc.parametrize("gate", [pytest.param(cell, id=cell.gate_id) for cell in cells], indirect=True)


def _cases_or_collection_error(state: MedgateState) -> list[Case]:
    """Bad data (a malformed item, an unreadable upstream file) stops collection with its message only."""
    state.plan.load()
    if state.plan.failure:
        pytest.fail(f"medgate: {state.plan.failure}", pytrace=False)
    return state.plan.cases


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    # A gate metric without thresholds has no cells this run: deselect it rather than report a skip.
    idle = [item for item in items if item.get_closest_marker("gate") is not None and gate_of(item) is None]
    if idle:
        config.hook.pytest_deselected(items=idle)
        idle_ids = {id(item) for item in idle}
        items[:] = [item for item in items if id(item) not in idle_ids]
    cases = [case for case in map(case_of, items) if case is not None]
    gates = [item for item in items if gate_of(item) is not None]
    state.active = bool(cases or gates)
    if not state.active or config.option.collectonly:
        return
    state.worker_side().set_selected(cases)
    others = [item for item in items if gate_of(item) is None]
    if state.is_worker:
        config.stash[WORKER].gates = [gate_descriptor(item) for item in gates]
        items[:] = others  # the controller evaluates gates once every worker is done
        return
    items[:] = others + gates  # gates run last, on the merged results
    controller = config.stash[CONTROLLER]
    controller.expect([case.case_id for case in cases])
    if gates:
        controller.gates_collected()


# -- fixtures -----------------------------------------------------------------------------------------


class CaseOutcome:
    """What a case test receives: the recorded outcome of its item under its perturbation and prompt."""

    def __init__(self, case: Case, record: CaseRecord) -> None:
        self.case = case
        self.record = record

    def check(self) -> None:
        """A case passes when the model produced a usable answer; correctness is measured, not asserted."""
        if self.record.get("non_finite"):
            where = "generation logits" if self.record.get("mode") == "generate" else f"scores {self.record.get('scores')}"
            pytest.fail(f"{self.case.case_id}: NaN or inf in the {where}", pytrace=False)


class GateCheck:
    """What a gate test receives; `check()` evaluates the gate on everything the run recorded."""

    def __init__(self, cell: AnyGateCell, controller: MedgateController, node: pytest.Item) -> None:
        self.cell = cell
        self.controller = controller
        self.node = node

    def check(self) -> None:
        verdict = self.controller.evaluate_gate(self.cell)
        self.node.user_properties.append((GATE_PROPERTY, verdict.to_dict()))
        if verdict.passed is None:
            pytest.skip(verdict.message)
        if not verdict.passed:
            pytest.fail(verdict.message, pytrace=False)


@pytest.fixture
def mcqa_case(request: pytest.FixtureRequest) -> CaseOutcome:
    state = request.config.stash[STATE]
    case: Case = request.param
    failure = None
    try:
        record = state.worker_side().record_for(case)
    except ModelLoadError as error:
        # Every later case would fail the same way: one clear failure, and the session stops here.
        failure = request.session.shouldfail = f"medgate: the model could not be loaded: {error}"
    except ServerDown as error:
        # Every later case would wait out the same retries: stop here, with one message; the report
        # is written with the cases that never ran listed as missing (status incomplete).
        failure = request.session.shouldfail = f"medgate: the server stopped answering: {error}"
    except ServerError as error:
        failure = f"medgate: {error}"
    if failure is not None:  # outside the except block: the message alone, no chained traceback
        pytest.fail(failure, pytrace=False)
    request.node.user_properties.append((CASE_PROPERTY, record))
    return CaseOutcome(case, record)


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> GateCheck:
    return GateCheck(request.param, request.config.stash[CONTROLLER], request.node)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """Right and wrong answers both pass; show which, so progress reads like a score sheet."""
    if report.when != "call" or not report.passed:
        return None
    record = next((value for key, value in report.user_properties if key == CASE_PROPERTY), None)
    if not isinstance(record, dict):
        return None
    if record.get("correct"):
        return "passed", ".", "PASSED (correct)"
    answer = record.get("predicted_label") or "no answer"
    return "passed", "w", f"PASSED (wrong: {answer}, gold {record.get('gold_label')})"
