"""The Markdown and HTML renderings written beside a JSON report (same name, `.md` and `.html`)."""

from __future__ import annotations

from pathlib import Path

from medgate.report.document import write_text_atomic
from medgate.report.html import render_html
from medgate.report.markdown import render_markdown
from medgate.report.summary import Document


def sibling(json_path: Path, suffix: str) -> Path:
    """report.json -> report.md; any other name gets the suffix appended, never replacing the JSON."""
    if json_path.suffix == ".json":
        return json_path.with_suffix(suffix)
    return json_path.with_name(json_path.name + suffix)


def write_readable_outputs(document: Document, json_path: Path,
                           baseline: Document | None = None) -> tuple[list[Path], list[str]]:
    """Write both renderings; a failure in one is reported, never raised: the JSON is already safe."""
    written: list[Path] = []
    errors: list[str] = []
    renderings = ((".md", lambda: render_markdown(document)), (".html", lambda: render_html(document, baseline)))
    for suffix, render in renderings:
        target = sibling(json_path, suffix)
        try:
            write_text_atomic(render(), target)
            written.append(target)
        except Exception as error:  # noqa: BLE001 - a rendering bug must not cost the run its report
            errors.append(f"could not write {target}: {type(error).__name__}: {error}")
    return written, errors
