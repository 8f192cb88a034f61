"""`--backend openai` against a real vLLM server (CPU build) on loopback, serving SmolLM2.

The servers are started by tests/conftest.py when the session begins (they take minutes to boot)
and stopped when it ends. The ONNX Runtime backend on the same checkpoint is the reference: the
server must give the same labels, the same generated text, and log-probabilities within 1e-3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import started_vllm_server
from session_reports import report_of

pytestmark = pytest.mark.slow

MAX_LOGPROB_DIFFERENCE = 1e-3


@pytest.fixture(scope="module")
def raw(shared_raw: Path) -> Path:
    return shared_raw


def common(checkpoint: Path, raw: Path) -> list[str]:
    return ["--model", str(checkpoint), "--data-dir", str(raw), "-p", "no:cacheprovider", "--no-prediction-cache"]


def by_case(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["case_id"]: case for case in document["cases"]}


def test_server_answers_like_onnx_runtime_in_both_modes_and_both_scoring_methods(suite, vllm, smollm2, raw):
    workload = ["--dataset", "medqa", "--dataset", "headqa-es", "--limit", "3", "--mode", "both",
                "--perturbations", "relabel_roman+distractor_sentence", *common(smollm2, raw)]
    reference = suite.runpytest_subprocess("--report", "ort.json", *workload)
    assert reference.ret in (0, 1), reference.stdout.str()[-2000:]  # SmolLM2 fails gates; every case must run
    served = suite.runpytest_subprocess("--report", "vllm.json", "--backend", "openai", "--base-url", vllm["url"],
                                        "--concurrency", "4", *workload)
    assert served.ret in (0, 1), served.stdout.str()[-2000:]
    # SmolLM2 spells every letter and roman label as one token, so auto scoring never needs echo;
    # --scoring echo runs the echo protocol on the same loglik cases.
    echoed = suite.runpytest_subprocess("--report", "echo.json", "--backend", "openai", "--base-url", vllm["url"],
                                        "--scoring", "echo", *[a if a != "both" else "loglik" for a in workload])
    assert echoed.ret in (0, 1), echoed.stdout.str()[-2000:]
    ort, openai, echo = (by_case(report_of(suite, name)) for name in ("ort.json", "vllm.json", "echo.json"))
    assert set(ort) == set(openai) and len(ort) == 2 * 3 * 2 * 2  # datasets x items x perturbations x modes
    assert set(echo) == {case_id for case_id, case in ort.items() if case["mode"] == "loglik"}

    largest = {"logprob_token_ids": 0.0, "echo": 0.0}
    for method, cases in (("logprob_token_ids", openai), ("echo", echo)):
        for case_id, case in cases.items():
            if case["mode"] != "loglik":
                continue
            expected = ort[case_id]
            assert case["predicted_label"] == expected["predicted_label"], (method, case_id)
            assert set(case["scores"]) == set(expected["scores"])
            difference = max(abs(case["scores"][label] - expected["scores"][label]) for label in case["scores"])
            largest[method] = max(largest[method], difference)
    generated = [case_id for case_id, case in ort.items() if case["mode"] == "generate"]
    assert generated and all(openai[c]["raw_output"] == ort[c]["raw_output"] for c in generated)
    assert all(openai[c]["stop_reason"] == ort[c]["stop_reason"] for c in generated)
    print(f"largest |log-probability difference| against ONNX Runtime: logprob_token_ids {largest['logprob_token_ids']:.2e}, "
          f"echo {largest['echo']:.2e}; {len(generated)} generations identical")
    assert max(largest.values()) <= MAX_LOGPROB_DIFFERENCE

    manifest = report_of(suite, "vllm.json")["manifest"]
    server = manifest["server"]
    assert server["base_url"] == vllm["url"] and server["model_id"] == str(smollm2)
    assert server["engine_version"] == "vllm 0.32.0" and server["system_fingerprints"]
    assert server["tokenize_probe"] == "agrees" and server["concurrency"] == 4
    assert server["scoring_methods"] == {"logprob_token_ids": 12, "echo": 0}
    assert report_of(suite, "echo.json")["manifest"]["server"]["scoring_methods"] == {"logprob_token_ids": 0,
                                                                                       "echo": 12}


def test_a_server_serving_another_model_is_a_usage_error_before_any_case(suite, vllm, tiny_checkpoint):
    result = suite.runpytest_subprocess("--backend", "openai", "--base-url", vllm["url"], "--model", "tiny",
                                        "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--backend openai: the server at * serves {os.environ['MEDGATE_SMOLLM2']}*"
                                 "which is not --model tiny*"])
    assert not (suite.path / "reports").exists()  # no case ran, no report


class DelayingProxy:
    """Forwards to the real server, holding back for `delay` seconds every completion request of more
    than one prompt: a server that has become slow once cases run (the one-prompt start-up probes
    still answer in time)."""

    def __init__(self, target: str, delay: float) -> None:
        self.target = target.removesuffix("/v1")
        self.delay = delay
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.endswith("/completions") and len(json.loads(body or b"{}").get("prompt", [])) > 1:
                    time.sleep(proxy.delay)
                request = urllib.request.Request(proxy.target + self.path, data=body, method=self.command,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client had given up

            do_GET = _forward
            do_POST = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_slow_server_is_retried_then_fails_with_one_clear_message(suite, vllm, smollm2, raw):
    # The timeout is long enough for a start-up probe queued behind another test's requests on the
    # same server; the held-back requests outlast it.
    proxy = DelayingProxy(vllm["url"], delay=100.0)
    try:
        started = time.monotonic()
        result = suite.runpytest_subprocess("--backend", "openai", "--base-url", proxy.url, "--dataset", "medqa",
                                            "--limit", "4", "--request-timeout", "30", "--request-attempts", "2",
                                            "--report", "report.json", *common(smollm2, raw))
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "no usable answer after 2 attempts" in output and "timeout 30 s each; last: timed out" in output
    assert "Traceback" not in output
    document = report_of(suite)
    assert document["status"] == "incomplete" and len(document["missing_cases"]) == 4
    assert elapsed < 180  # two 30 s attempts and 0.5 s of back-off (plus start-up), not a hang


def test_a_server_stopped_mid_run_leaves_an_incomplete_report_and_one_message(suite, smollm2, raw):
    server = started_vllm_server("stoppable")
    command = [sys.executable, "-m", "pytest", "--backend", "openai", "--base-url", str(server["url"]),
               "--dataset", "medqa", "--limit", "40", "--group-size", "4", "--concurrency", "1",
               # A generous timeout: the first requests to a cold server on a loaded 2-core CI machine took
               # over 10 s (CI failed here before any case passed). Once the server is killed, connections are
               # refused at once, so the timeout does not lengthen the ending measured below.
               "--request-timeout", "60", "--request-attempts", "3", "--report", "report.json", "-v",
               *common(smollm2, raw)]
    session = subprocess.Popen(command, cwd=suite.path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert session.stdout is not None
    seen: list[str] = []
    try:
        for line in iter(session.stdout.readline, b""):
            seen.append(line.decode(errors="replace"))
            if " PASSED" in seen[-1]:  # the first group has been answered: stop the server now
                os.killpg(int(server["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
                stopped = time.monotonic()
                break
        else:
            pytest.fail("the session ended before any case passed:\n" + "".join(seen[-30:]))
        rest, _ = session.communicate(timeout=180)  # nothing may hang
        ended = time.monotonic() - stopped
    finally:
        if session.poll() is None:
            session.kill()
    output = "".join(seen) + rest.decode(errors="replace")
    assert session.returncode == pytest.ExitCode.TESTS_FAILED
    assert output.count("medgate: the server stopped answering") >= 1
    assert "no usable answer after 3 attempts" in output and "Traceback" not in output
    document = report_of(suite)
    assert document["status"] == "incomplete"
    assert 0 < len(document["cases"]) < 40 and len(document["cases"]) + len(document["missing_cases"]) == 40
    assert ended < 120


def test_bench_times_medgate_and_lm_eval_local_completions_on_the_same_server(vllm, smollm2, raw, tmp_path):
    from medgate.cli import main

    out = tmp_path / "bench.json"
    code = main(["bench", "--backend", "openai", "--base-url", str(vllm["url"]), f"--model={smollm2}",
                 "--dataset", "medqa", "--data-dir", str(raw), "--limit", "2", "--no-warmup", "--concurrency", "4",
                 "--contenders", "medgate,lm_eval", "--out", str(out), "--keep", str(tmp_path / "work")])
    assert code == 0
    document = json.loads(out.read_text())
    assert set(document["contenders"]) == {"medgate", "lm_eval"}
    assert document["server"]["model_id"] == str(smollm2)
    assert document["agreement_with_medgate"] == {"lm_eval": 1.0}
    assert document["contenders"]["medgate"]["scoring_methods"] == {"logprob_token_ids": 2, "echo": 0}
    assert document["ratios"]["lm_eval"] > 0
