"""The medgate section of pytest's terminal summary: what ran, what is missing, the gate tables."""

from __future__ import annotations

from typing import Any

from medgate.compare.regression import cell_name, describe_change
from medgate.pytest_session import REGRESSION_GATE
from medgate.report.manifest import truncation_by_dataset


def summarise(controller: Any, terminalreporter: Any) -> None:
    """`controller` is the session's MedgateController, after it wrote (or failed to write) the report."""
    write = terminalreporter.write_line
    terminalreporter.section("medgate")
    side = controller.side
    total = len(side.expected)
    missing = side.missing_cases()
    for worker, error in sorted(side.crashed_workers.items()):
        running = controller.crash_items.get(worker)
        during = f" while running {running.split('::')[-1]}" if running else ""
        write(f"worker {worker} died ({error}){during}; the run is incomplete: {len(missing)} of {total} "
              "case(s) have no result (listed in the report's missing_cases)", red=True)
    if missing and not side.crashed_workers:
        write(f"the run is incomplete: {len(missing)} of {total} case(s) have no result (listed in the report's "
              "missing_cases)", red=True)
    records = side.records
    if records:
        correct = sum(1 for r in records.values() if r.get("correct"))
        write(f"cases: {len(records)} answered, {correct} correct ({correct / len(records):.1%})")
    if controller.token_work and (line := token_work_line(controller.token_work)):
        write(line)
    for dataset, entry in sorted(truncation_by_dataset(records.values()).items()):
        write(f"{dataset}: {entry['cases']} case(s) truncated from the left to fit the model's context "
              f"(up to {entry['max_tokens_dropped']} tokens dropped)", yellow=True)
    thresholds = [g for g in controller.gates if g.get("kind") != REGRESSION_GATE]
    regressions = [g for g in controller.gates if g.get("kind") == REGRESSION_GATE]
    if thresholds:
        write(f"{'gate':<58} {'value':>7} {'bound':>12} {'n':>6}  result")
        for gate in thresholds:
            value = "-" if gate["value"] is None else f"{gate['value']:.3f}"
            bound = f"{'>=' if gate['bound'] == 'min' else '<='} {gate['threshold']:.3f}"
            write(f"{gate['name']:<58} {value:>7} {bound:>12} {gate['n']:>6}  {_result(gate)}",
                  red=gate["passed"] is False, green=gate["passed"] is True)
    if controller.comparison is not None:
        _summarise_comparison(controller.comparison, write)
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
        for gate in regressions:
            if gate["passed"] is False and gate["dataset"] == "-":
                write(gate["message"], red=True)
    for warning in controller.warnings:
        write(f"warning: {warning}", yellow=True)
    if controller.report_path is not None:
        write(f"report: {controller.report_path}")
        if controller.outputs:
            write(f"readable: {', '.join(str(p) for p in controller.outputs)}")
    if controller.baseline_saved is not None:
        write(f"baseline saved: {controller.baseline_saved}")
    for message in controller.errors + controller.output_errors:
        write(message, red=True)


def token_work_line(work: dict[str, Any]) -> str | None:
    """`prompt tokens computed: loglik 298,235 of 1,260,891 (0.24), generation prefill ... (prefix sharing)`."""
    names = {"loglik": "loglik", "generate_prefill": "generation prefill"}
    parts = [f"{names[mode]} {entry['computed']:,} of {entry['presented']:,} ({entry['computed_fraction']:.2f})"
             for mode, entry in work.items() if mode in names and entry.get("presented")]
    if not parts:
        return None
    how = "prefix sharing" if work.get("prefix_sharing") else "--no-prefix-sharing"
    return f"prompt tokens computed: {', '.join(parts)} ({how})"


def _summarise_comparison(comparison: dict[str, Any], write: Any) -> None:
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
