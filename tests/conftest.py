"""Shared fixtures for medgate's own tests."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import vllm_server
from medgate.paths import cache_dir

ROOT = Path(__file__).resolve().parents[1]
VLLM_SERVERS = "MEDGATE_TEST_VLLM_SERVERS"  # JSON: name -> url, pid, log of servers this session started
VLLM_TESTS = ROOT / "tests" / "test_openai_vllm.py"
_started: list[vllm_server.VllmServer] = []

# pytester points HOME at each test's temporary folder, so sessions it starts would look for
# ~/.cache/medgate there and train the tiny model again (35 s each). Pin the real cache for them.
os.environ.setdefault("MEDGATE_CACHE_DIR", str(cache_dir()))
SHARED_RAW = Path(os.environ.get("MEDGATE_SHARED_DIR", ROOT.parent / "shared")) / "datasets" / "raw"


def _selects_vllm_tests(config: pytest.Config) -> bool:
    for argument in config.args:
        path = Path(argument.split("::")[0]).resolve()
        if path == VLLM_TESTS or (path.is_dir() and VLLM_TESTS.is_relative_to(path)):
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    """Start the vLLM servers (1-2 min each on two cores) at once, in the background, so that they
    boot while the other tests run. Only the controller starts them (xdist workers inherit the
    environment variable that says where they are); the controller stops them at the end."""
    if hasattr(config, "workerinput") or VLLM_SERVERS in os.environ or vllm_server.missing_parts():
        return
    if config.option.collectonly or not _selects_vllm_tests(config):
        return
    python, model = os.environ[vllm_server.VLLM_PYTHON], os.environ[vllm_server.SMOLLM2]
    logs = ROOT / "build" / "vllm-logs"
    # "shared" serves every test but one; "stoppable" is stopped mid-run by that one.
    servers = {"shared": vllm_server.VllmServer(python, model, logs / "shared.log", kv_cache_gib=2),
               "stoppable": vllm_server.VllmServer(python, model, logs / "stoppable.log", kv_cache_gib=1)}
    for server in servers.values():
        server.start()
        _started.append(server)
    os.environ[VLLM_SERVERS] = json.dumps({name: server.describe() for name, server in servers.items()})


def pytest_unconfigure(config: pytest.Config) -> None:
    while _started:
        _started.pop().stop()
    if not hasattr(config, "workerinput"):
        os.environ.pop(VLLM_SERVERS, None)


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


def started_vllm_server(name: str) -> dict[str, object]:
    """The description of a server this session started, once it answers (skips where none can run)."""
    reason = vllm_server.missing_parts()
    if reason is not None:
        pytest.skip(f"no real vLLM server: {reason}")
    described = json.loads(os.environ.get(VLLM_SERVERS, "{}")).get(name)
    if described is None:
        pytest.skip("the vLLM servers start only when the session selects tests/test_openai_vllm.py")
    vllm_server.wait_ready(described)
    return described


@pytest.fixture(scope="session")
def vllm() -> dict[str, object]:
    return started_vllm_server("shared")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return Path(os.environ[vllm_server.SMOLLM2])


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
