"""However a run ends, it leaves a report: Ctrl-C and SIGTERM (serially and under xdist), killed
workers. Real sessions in subprocesses, real signals; waits poll for progress and are bounded."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medgate.report.manifest import new_run_id
from session_reports import read_report

pytestmark = pytest.mark.slow

# sample-en + sample-es (48 items each) x 16 perturbations x 3 prompts: far more than can finish
# before the signal, so every ending below has answered and missing cases.
EVERY_CASE = 96 * 16 * 3
ARGS = ("--perturbations", "all", "--prompts", "all", "--no-prediction-cache", "--report", "report.json",
        "-p", "no:cacheprovider")
WAIT = 300  # seconds; generous for a loaded two-core machine, never reached when things work


def start(folder: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    output = folder / "output.txt"
    process = subprocess.Popen([sys.executable, "-m", "pytest", *ARGS, *extra], cwd=folder,
                               stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    return process, output


def wait_for_answers(process: subprocess.Popen[bytes], output: Path, answers: int = 30) -> None:
    """Until the progress lines show `answers` results (xdist prints them as they arrive)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        progress = "".join(re.findall(r"^[.wFEs]+", output.read_text(errors="replace"), re.MULTILINE))
        if len(progress) >= answers:
            return
        if process.poll() is not None:
            pytest.fail(f"the session ended before {answers} answers:\n{output.read_text()}")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no {answers} answers within {WAIT} s:\n{output.read_text()}")


def finish(process: subprocess.Popen[bytes], output: Path) -> int:
    try:
        return process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the session did not end within {WAIT} s of the signal:\n{output.read_text()}")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def check_report(folder: Path, status: str) -> dict:
    document = read_report(folder / "report.json")
    answered = [case["case_id"] for case in document["cases"]]
    missing = document["missing_cases"]
    assert document["status"] == status
    assert answered and missing, (len(answered), len(missing))
    assert not set(answered) & set(missing) and len(set(missing)) == len(missing)
    assert len(answered) + len(missing) == EVERY_CASE  # every case either kept or listed
    assert document["summary"]["missing_cases"] == len(missing)
    return document


ENDINGS = {
    "ctrl-c under -n 2": (("-n", "2"), "group", signal.SIGINT),
    "sigterm to the controller under -n 2": (("-n", "2"), "controller", signal.SIGTERM),
    "sigterm to every process under -n 2": (("-n", "2"), "group", signal.SIGTERM),
    "sigterm serially": ((), "controller", signal.SIGTERM),
    "ctrl-c serially": ((), "group", signal.SIGINT),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_signalled_run_writes_an_interrupted_report(suite, tiny_checkpoint, ending):
    extra, target, signum = ENDINGS[ending]
    process, output = start(suite.path, *extra)
    wait_for_answers(process, output)
    if target == "group":  # what a terminal's Ctrl-C or a runner's cancel does: every process gets it
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    assert finish(process, output) == pytest.ExitCode.INTERRUPTED, output.read_text()
    check_report(suite.path, "interrupted")
    assert "report: report.json" in output.read_text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_killing_every_worker_writes_an_incomplete_report(suite, tiny_checkpoint, workers):
    process, output = start(suite.path, "-n", workers)
    wait_for_answers(process, output)
    killed = children(process.pid)
    assert len(killed) == int(workers)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert finish(process, output) == pytest.ExitCode.TESTS_FAILED, output.read_text()
    document = check_report(suite.path, "incomplete")
    assert set(document["manifest"]["crashed_workers"]) == {f"gw{i}" for i in range(int(workers))}


def test_run_ids_started_in_the_same_second_differ():
    started = dt.datetime(2026, 12, 3, 11, 33, 29, tzinfo=dt.timezone.utc)
    ids = {new_run_id(started, "tiny") for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"20261203-113329-[0-9a-f]{6}-tiny", run_id) for run_id in ids)


def test_two_runs_at_once_write_two_default_reports(suite, tiny_checkpoint):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "sample-en and 0001"]
    runs = [subprocess.Popen(command, cwd=suite.path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            for _ in range(2)]
    assert [run.wait(timeout=WAIT) for run in runs] == [0, 0]
    reports = sorted((suite.path / "reports").glob("*-tiny.json"))
    assert len(reports) == 2 and len({read_report(path)["run_id"] for path in reports}) == 2
