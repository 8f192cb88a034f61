"""What the readable outputs show, chosen once for both the Markdown and the HTML rendering."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medgate.metrics import ALL, ORIGINAL
from medgate.metrics.catalogue import CATALOGUE

Document = Mapping[str, Any]


@dataclass(frozen=True)
class Grid:
    """A rows x columns table of metric values (e.g. accuracy per dataset x perturbation)."""

    rows: list[str]
    columns: list[str]
    values: dict[tuple[str, str], Mapping[str, Any]]  # (row, column) -> the metric entry


def _metrics(document: Document, name: str) -> list[Mapping[str, Any]]:
    return [m for m in document.get("metrics", []) if m["name"] == name and m["value"] is not None]


def _row_label(dataset: str, mode: str, modes: set[str]) -> str:
    return dataset if len(modes) == 1 else f"{dataset} ({mode})"


def _perturbation_order(names: set[str]) -> list[str]:
    return sorted(names, key=lambda name: (name != ORIGINAL, name))


def accuracy_grid(document: Document) -> Grid:
    """Accuracy over all prompts, per dataset (and mode) x perturbation."""
    entries = [m for m in _metrics(document, "accuracy") if m["prompt"] == ALL]
    modes = {m["mode"] for m in entries}
    values = {(_row_label(m["dataset"], m["mode"], modes), m["perturbation"]): m for m in entries}
    rows = sorted({row for row, _ in values})
    return Grid(rows, _perturbation_order({column for _, column in values}), values)


def per_block(document: Document, name: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, entry) for a metric over all prompts, per dataset x perturbation (x mode)."""
    entries = [m for m in _metrics(document, name) if m["prompt"] == ALL]
    modes = {m["mode"] for m in entries}
    order = {p: i for i, p in enumerate(_perturbation_order({m["perturbation"] for m in entries}))}
    entries.sort(key=lambda m: (m["dataset"], order[m["perturbation"]], m["mode"]))
    return [(f"{_row_label(m['dataset'], m['mode'], modes)} / {m['perturbation']}", m) for m in entries]


def gate_rows(document: Document) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(threshold gates, regression gates)."""
    gates = document.get("gates", [])
    return ([g for g in gates if g.get("kind") != "regression"], [g for g in gates if g.get("kind") == "regression"])


def compared_cells(comparison: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in comparison.get("cells", []) if c["comparable"] and c["delta"] is not None]


def _lower_is_better(metric: str) -> bool:
    spec = CATALOGUE.get(metric)
    return spec is not None and spec.direction == "lower"


def biggest_regressions(comparison: Mapping[str, Any], limit: int = 10) -> list[Mapping[str, Any]]:
    """The largest drops, significant ones first (a large but noisy drop ranks after a proven one)."""
    worse = [c for c in compared_cells(comparison) if (c["delta"] > 0) == _lower_is_better(c["metric"])
             and c["delta"] != 0]
    ranked = sorted(worse, key=lambda c: (not c["significant"], -abs(c["delta"])))
    return ranked[:limit]


def flips_by_direction(comparison: Mapping[str, Any], direction: str) -> list[Mapping[str, Any]]:
    return [f for f in comparison.get("flips", {}).get("items", []) if f["direction"] == direction]


def headline(document: Document) -> list[tuple[str, str]]:
    """(label, text) pairs for the top of a summary."""
    manifest = document.get("manifest", {})
    model = manifest.get("model", {})
    summary = document.get("summary", {})
    fingerprint = (model.get("fingerprint") or "")[:12]
    cases = summary.get("cases", 0)
    correct = summary.get("correct", 0)
    share = f" ({correct / cases:.1%})" if cases else ""
    lines = [
        ("Status", str(document.get("status", "?")).upper()),
        ("Model", f"{model.get('alias')}" + (f" (fingerprint {fingerprint})" if fingerprint else "")),
        ("Backend", f"{manifest.get('backend')} on {manifest.get('device')} ({manifest.get('execution_provider')})"),
        ("Cases", f"{cases} answered, {correct} correct{share}"),
        ("Gates", f"{summary.get('gates', 0)} ({summary.get('gates_failed', 0)} failed, "
                  f"{summary.get('gates_skipped', 0)} skipped)"),
    ]
    if summary.get("missing_cases"):
        lines.append(("Missing", f"{summary['missing_cases']} case(s) without a result: the run is incomplete"))
    lines += [("Error", str(error)) for error in document.get("errors", [])]
    lines += [("Warning", str(warning)) for warning in document.get("warnings", [])]
    return lines


def cell_label(cell: Mapping[str, Any]) -> str:
    parts = [cell["dataset"], cell["perturbation"], cell["prompt"], cell["mode"]]
    return f"{cell['metric']} {'/'.join(parts)}"


def value_text(share: float | None) -> str:
    return "-" if share is None else f"{share:.3f}"


def change_text(delta: float | None, metric: str | None = None) -> str:
    """A change in percentage points for a share; as a plain difference for a distance or a score."""
    if delta is None:
        return "-"
    spec = CATALOGUE.get(metric) if metric else None
    return f"{delta:+.3f}" if spec is not None and not spec.in_points else f"{delta * 100:+.1f} pp"


def p_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def interval_text(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{low * 100:+.1f} to {high * 100:+.1f} pp"


def limited(items: Sequence[Any], limit: int) -> tuple[list[Any], int]:
    return list(items[:limit]), max(0, len(items) - limit)
