"""Keeping each prediction group on one xdist worker.

xdist's `--dist loadgroup` learns a test's group from an `@group` suffix that its workers write
into `item._nodeid`; pytest 9 derives node ids from another attribute, so the suffix never reaches
the controller and every case becomes its own scope. Each worker then predicts every group it
touches (about N times the model work with -n N). This scheduler does what loadgroup means, the way
xdist's own LoadGroupScheduling is built (a LoadScopeScheduling whose scope is the group), but
reads each case's group from the run plan, which the controller can compute from the options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xdist.scheduler import LoadScopeScheduling


def case_id_of(nodeid: str) -> str | None:
    """`suites/test_mcqa.py::test_mcqa[sample-en/0007/original/p0]` -> `sample-en/0007/original/p0`."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1:-1]


class CaseGroupScheduling(LoadScopeScheduling):
    def __init__(self, config: Any, log: Any, groups: Mapping[str, str]) -> None:
        super().__init__(config, log)
        self._groups = groups

    def _split_scope(self, nodeid: str) -> str:
        case_id = case_id_of(nodeid)
        group = self._groups.get(case_id) if case_id is not None else None
        return f"medgate-group:{group}" if group is not None else nodeid
