"""Shared fixtures for medgate's own tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medgate.paths import cache_dir

ROOT = Path(__file__).resolve().parents[1]

# pytester points HOME at each test's temporary folder, so sessions it starts would look for
# ~/.cache/medgate there and train the tiny model again (35 s each). Pin the real cache for them.
os.environ.setdefault("MEDGATE_CACHE_DIR", str(cache_dir()))
SHARED_RAW = ROOT.parent / "shared" / "datasets" / "raw"


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    from medgate.tiny import ensure_tiny

    return ensure_tiny(quiet=True)


@pytest.fixture(scope="session")
def untrained_checkpoint() -> Path:
    from medgate.tiny import TinyRecipe, ensure_tiny

    return ensure_tiny(TinyRecipe(untrained=True), quiet=True)


@pytest.fixture(scope="session")
def shared_raw() -> Path:
    if not SHARED_RAW.is_dir():
        pytest.skip(f"upstream datasets not found at {SHARED_RAW} (CI puts ../shared beside the clone)")
    return SHARED_RAW


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder holding a copy of the project's suites/."""
    for source in (ROOT / "suites").glob("test_*.py"):
        shutil.copy(source, pytester.path / source.name)
    pytester.makeini("[pytest]\n")  # rootdir = this folder (reports/ goes here)
    return pytester


@pytest.fixture(autouse=True)
def _every_written_report_is_strict_json_and_valid(tmp_path_factory, monkeypatch):
    """After each test: every JSON file medgate wrote during it (in this process or in the sessions
    it started) that is a report or a comparison must parse with a strict JSON parser and validate
    against fixtures/schemas/report.schema.json. medgate lists what it writes in $MEDGATE_WRITTEN_LOG."""
    from session_reports import check_written

    log = tmp_path_factory.mktemp("written") / "written.txt"
    monkeypatch.setenv("MEDGATE_WRITTEN_LOG", str(log))
    yield
    written = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    problems = check_written([Path(line) for line in dict.fromkeys(written)])
    assert problems == [], "reports written by this test are not strict, valid JSON:\n" + "\n".join(problems)
