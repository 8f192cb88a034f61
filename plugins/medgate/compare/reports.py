"""Reading reports to compare, and the committed baselines under reports/baselines/<model>/<name>.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from medgate.report.document import READABLE_SCHEMA_VERSIONS, write_json_atomic
from medgate.report.items_table import ItemsTableError, restore_presented
from medgate.report.manifest import model_slug

BASELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_BASELINE_NAME = 100  # checked before the run: a name the file system refuses would be found only after it
# What a comparison reads from each case; the rest of the schema is not needed to compare.
CASE_FIELDS = frozenset({"case_id", "item_id", "dataset", "language", "perturbation", "prompt", "mode", "question",
                         "options_presented", "gold_label", "predicted_label", "correct", "prompt_hash", "item_hash"})
TEXT_FIELDS = ("case_id", "item_id", "dataset", "language", "perturbation", "prompt", "mode", "question",
               "gold_label", "prompt_hash", "item_hash")
UNSAVED_STATUSES = frozenset({"incomplete", "interrupted"})


class ReportError(ValueError):
    pass


def load_report(path: Path) -> dict[str, Any]:
    """A report document, checked for what a comparison needs; a clear error otherwise."""
    try:
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: cannot read the report: {error}") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not a JSON report ({error})") from None
    except RecursionError:
        raise ReportError(f"{path}: not a medgate report (JSON nested too deeply)") from None
    if not isinstance(document, dict) or "cases" not in document or "manifest" not in document:
        raise ReportError(f"{path}: not a medgate report (no `cases` or `manifest`)")
    version = document.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise ReportError(f"{path}: report schema version {version!r}; this medgate reads "
                          f"{' and '.join(map(repr, READABLE_SCHEMA_VERSIONS))}")
    if not isinstance(document["cases"], list) or not isinstance(document["manifest"], dict):
        raise ReportError(f"{path}: `cases` must be a list and `manifest` an object")
    if not isinstance(document["manifest"].get("model", {}), dict):
        raise ReportError(f"{path}: `manifest.model` must be an object")
    try:
        restore_presented(document)
    except ItemsTableError as error:
        raise ReportError(f"{path}: {error}") from None
    seen: set[str] = set()
    for index, case in enumerate(document["cases"]):
        missing = CASE_FIELDS - case.keys() if isinstance(case, dict) else CASE_FIELDS
        if missing:
            raise ReportError(f"{path}: cases[{index}] lacks {', '.join(sorted(missing))}")
        wrong = _mistyped(case)
        if wrong is not None:
            raise ReportError(f"{path}: cases[{index}].{wrong}")
        if case["case_id"] in seen:
            raise ReportError(f"{path}: case {case['case_id']} appears twice")
        seen.add(case["case_id"])
    return document


def _mistyped(case: dict[str, Any]) -> str | None:
    """The first field of a case whose type a comparison cannot read, said as `field must be ...`."""
    for name in TEXT_FIELDS:
        if not isinstance(case[name], str):
            return f"{name} must be a string"
    if not isinstance(case["predicted_label"], (str, type(None))):
        return "predicted_label must be a string or null"
    if not isinstance(case["correct"], (bool, type(None))):
        return "correct must be true, false or null"
    options = case["options_presented"]
    if not isinstance(options, list) or not all(
            isinstance(option, dict) and isinstance(option.get("label"), str) and isinstance(option.get("text"), str)
            for option in options):
        return "options_presented must be a list of {label, text} objects"
    return None


def baselines_dir(root: Path, model_alias: str) -> Path:
    return root / "reports" / "baselines" / model_slug(model_alias)


def check_baseline_name(name: str) -> str:
    """The name a baseline is saved under; `v1.json` is the baseline `v1` (saved as v1.json, not v1.json.json)."""
    stem = name.removesuffix(".json")
    if not BASELINE_NAME.fullmatch(stem) or stem.endswith(".json") or len(stem) > MAX_BASELINE_NAME:
        raise ReportError(f"baseline name {name[:MAX_BASELINE_NAME]!r}: use up to {MAX_BASELINE_NAME} letters, "
                          "digits, '.', '_' and '-' (e.g. v1 or release-2.3)")
    return stem


def resolve_report(spec: str, root: Path, model_alias: str) -> Path:
    """`--compare` takes a report file, or the name of a baseline saved for this model."""
    path = Path(spec).expanduser()  # `--compare=~/x.json`: no shell expands a `~` after `=`
    if path.is_file():
        return path
    if "/" in spec or "\\" in spec:
        raise ReportError(f"--compare {spec}: no such report file")
    if spec.endswith(".json") and not BASELINE_NAME.fullmatch(spec.removesuffix(".json")):
        raise ReportError(f"--compare {spec}: no such report file")
    stem = check_baseline_name(spec)  # `v1.json` is also the baseline saved as `--save-baseline v1.json`
    folder = baselines_dir(root, model_alias)
    path = folder / f"{stem}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        listed = f"saved baselines for {model_slug(model_alias)}: {', '.join(known)}" if known else \
            f"no baselines saved for {model_slug(model_alias)} (save one with --save-baseline NAME)"
        what = "no such report file and no baseline" if spec.endswith(".json") else "no baseline"
        raise ReportError(f"--compare {spec}: {what} {path}; {listed}")
    return path


def save_baseline(document: dict[str, Any], root: Path, model_alias: str, name: str) -> Path:
    """Store the run as a baseline (without its own comparison: a baseline stands for one run)."""
    status = document.get("status")
    if status in UNSAVED_STATUSES:
        raise ReportError(f"--save-baseline {name}: the run is {status}; an incomplete run is no baseline")
    path = baselines_dir(root, model_alias) / f"{check_baseline_name(name)}.json"
    if status == "failed" and path.exists():
        # `--compare v1 --save-baseline v1` on a regressed checkpoint would otherwise make the
        # regression the reference that the next run is compared with.
        raise ReportError(f"--save-baseline {name}: the run failed its gates, and a failed run does not replace "
                          f"the baseline {path} (save it under another name)")
    write_json_atomic({k: v for k, v in document.items() if k != "comparison"}, path)
    return path
