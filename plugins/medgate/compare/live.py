"""The comparison of a running session with its baseline (`--compare`), shared by the regression
gates and the report: computed once the results are in, and again only if more arrive."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medgate.compare.comparison import CompareSettings, compare_reports, headers
from medgate.compare.outcomes import Record


class LiveComparison:
    def __init__(self, baseline: dict[str, Any], baseline_path: Path,
                 settings: CompareSettings = CompareSettings()) -> None:
        self.baseline = baseline
        self.baseline_path = baseline_path
        self.settings = settings
        self._result: dict[str, Any] | None = None
        self._compared_cases = -1

    def result(self, records: Sequence[Record], manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Records only ever accumulate in a session, so their count says whether anything changed."""
        if self._result is None or self._compared_cases != len(records):
            current = {"run_id": manifest.get("run_id"), "manifest": manifest, "cases": records}
            self._result = compare_reports(self.baseline, current, self.settings)
            self._compared_cases = len(records)
        return self._result

    def final(self, records: Sequence[Record], document_head: Mapping[str, Any],
              report_path: Path | None) -> dict[str, Any]:
        """The comparison for the report, with both runs fully described (the manifest is complete now)."""
        result = self.result(records, document_head["manifest"])
        return {**result, **headers(self.baseline, document_head, str(self.baseline_path),
                                    str(report_path) if report_path else None)}
