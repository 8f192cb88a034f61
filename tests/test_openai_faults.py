"""`--backend openai` against a loopback server of our own: retries, back-off, timeouts, 429/500,
malformed JSON, a model or tokenizer that does not match, credentials kept out of reports.

The real server (vLLM) is in test_openai_vllm.py; these are the faults it cannot be made to produce.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest

from fake_openai_server import Fault, FakeOpenAIServer
from medgate.backends.base import GenerateRequest, ScoreRequest
from medgate.backends.http import JsonClient, RetryPolicy, ServerDown, ServerProtocolError, ServerRejected, redact_url
from medgate.backends.openai import (
    OpenAIBackend,
    ServerMismatch,
    ServerSettings,
    _apply_stop_rule,
    check_base_url,
)
from medgate.tokenization import TextTokenizer
from session_reports import report_of

FAST = {"attempts": 3, "timeout": 2.0}


@pytest.fixture
def tokenizer(tiny_checkpoint: Path) -> TextTokenizer:
    return TextTokenizer(tiny_checkpoint)


@pytest.fixture
def server(tiny_checkpoint: Path, tokenizer: TextTokenizer):
    with FakeOpenAIServer(str(tiny_checkpoint), tokenizer.encode, generated=[5, 6, 7, 8]) as fake:
        yield fake


def backend_for(server: FakeOpenAIServer, checkpoint: Path, tokenizer: TextTokenizer, **settings) -> OpenAIBackend:
    options = {"concurrency": 2, **FAST, **settings}
    return OpenAIBackend(ServerSettings(base_url=server.base_url, **options), checkpoint, tokenizer, None)


def no_sleep_client(url: str, attempts: int = 4, timeout: float = 2.0) -> tuple[JsonClient, list[float]]:
    slept: list[float] = []
    return JsonClient(url, None, RetryPolicy(attempts=attempts, timeout=timeout), sleep=slept.append), slept


def test_logprob_token_ids_scores_every_label_in_the_callers_order(server, tiny_checkpoint, tokenizer):
    backend = backend_for(server, tiny_checkpoint, tokenizer)
    requests = [ScoreRequest((1, 2, 3), ((10,), (11,), (12,))), ScoreRequest((4, 5), ((20,), (21,)))]
    results = backend.score(requests)
    assert [r.logprobs for r in results] == [(-4.0, -3.0, -2.0), (-3.0, -2.0)]
    sent = server.completions()[-2:]
    assert sorted(tuple(b["logprob_token_ids"]) for b in sent) == [(10, 11, 12), (20, 21)]
    assert all(b["max_tokens"] == 1 and b["temperature"] == 0 for b in sent)
    assert backend.method_counts == {"logprob_token_ids": 2, "echo": 0}


def test_multi_token_continuations_use_the_echo_protocol(server, tiny_checkpoint, tokenizer):
    backend = backend_for(server, tiny_checkpoint, tokenizer)
    results = backend.score([ScoreRequest((1, 2, 3), ((10, 11), (12,)))])
    assert results[0].logprobs == (-1.0, -0.5)  # the fake echoes -0.5 per position
    body = server.completions()[-1]
    assert body["echo"] is True and body["logprobs"] == 0 and body["max_tokens"] == 1
    assert body["prompt"] == [[1, 2, 3, 10, 11], [1, 2, 3, 12]]
    assert backend.method_counts == {"logprob_token_ids": 0, "echo": 1}


def test_a_server_without_logprob_token_ids_falls_back_to_echo(tiny_checkpoint, tokenizer):
    with FakeOpenAIServer(str(tiny_checkpoint), tokenizer.encode, logprob_token_ids=False) as fake:
        backend = backend_for(fake, tiny_checkpoint, tokenizer)
        assert backend.served.logprob_token_ids is False
        backend.score([ScoreRequest((1, 2), ((10,), (11,)))])
        assert backend.method_counts["echo"] == 1
        assert "logprob_token_ids" not in fake.completions()[-1]


def test_generation_sends_token_ids_and_applies_the_stop_rule_here(server, tiny_checkpoint, tokenizer):
    backend = backend_for(server, tiny_checkpoint, tokenizer)
    results = backend.generate([GenerateRequest((1, 2, 3), 4)], frozenset({99}), lambda tokens: len(tokens) == 3)
    assert results[0].token_ids == (5, 6, 7) and results[0].stop_reason == "stop"
    body = server.completions()[-1]
    assert body["prompt"] == [[1, 2, 3]] and body["max_tokens"] == 4 and body["stop_token_ids"] == [99]


def test_stop_rule_matches_the_engine_on_eos_and_length():
    never = lambda tokens: False  # noqa: E731
    assert _apply_stop_rule([5, 2, 7], 8, frozenset({2}), never, 0).token_ids == (5,)
    assert _apply_stop_rule([5, 2, 7], 8, frozenset({2}), never, 0).stop_reason == "eos"
    assert _apply_stop_rule([5, 6, 7], 2, frozenset({2}), never, 3).stop_reason == "length"
    assert _apply_stop_rule([5, 6, 7], 2, frozenset({2}), never, 3).truncated_tokens == 3


def test_429_and_500_are_retried_with_back_off_then_answered(server):
    server.fail("/version", Fault(429, headers={"Retry-After": "3"}), Fault(500), Fault(503))
    client, slept = no_sleep_client(server.base_url.removesuffix("/v1"))
    assert client.get("/version") == {"version": "fake-1"}
    assert slept == [3.0, 1.0, 2.0]  # Retry-After honoured, then 0.5 s doubling (the first pause was 3 s)
    assert client.retries == 3


def test_a_server_that_keeps_failing_is_down_with_one_message_and_not_asked_again(server):
    server.fail_always("/version", Fault(500, b'{"error": {"message": "engine dead"}}'))
    client, slept = no_sleep_client(server.base_url.removesuffix("/v1"), attempts=3)
    with pytest.raises(ServerDown, match=r"no usable answer after 3 attempts.*HTTP 500: engine dead"):
        client.get("/version")
    asked = len(server.requests)
    with pytest.raises(ServerDown, match="given up earlier"):
        client.get("/version")
    assert len(server.requests) == asked and slept == [0.5, 1.0]


def test_other_4xx_answers_are_not_retried(server):
    client, slept = no_sleep_client(server.base_url.removesuffix("/v1"))
    with pytest.raises(ServerRejected, match="HTTP 404: no route /nowhere"):
        client.get("/nowhere")
    assert slept == []


def test_malformed_json_is_a_clear_protocol_error(server):
    server.fail("/version", Fault(200, b'{"version": "1.0"'))
    client, slept = no_sleep_client(server.base_url.removesuffix("/v1"))
    with pytest.raises(ServerProtocolError, match=r"not JSON: b'\{\"version\": \"1.0\"'"):
        client.get("/version")
    assert slept == []


def test_well_formed_json_without_the_fields_is_a_protocol_error(server, tiny_checkpoint, tokenizer):
    backend = backend_for(server, tiny_checkpoint, tokenizer)
    server.fail("/v1/completions", Fault(200, b'{"choices": [{"index": 0, "text": "A"}]}'))
    with pytest.raises(ServerProtocolError, match="no top_logprobs"):
        backend.score([ScoreRequest((1, 2), ((10,), (11,)))])


def test_an_answer_slower_than_the_timeout_is_retried_then_down(server):
    server.fail_always("/version", Fault(200, b"{}", delay=1.0))
    client, slept = no_sleep_client(server.base_url.removesuffix("/v1"), attempts=2, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ServerDown, match=r"2 attempts.*timeout 0.3 s each; last: timed out"):
        client.get("/version")
    assert time.monotonic() - started < 1.5 and slept == [0.5]


def test_a_server_dripping_its_answer_is_cut_at_the_timeout_not_per_byte():
    """The socket timeout bounds one read; a byte every 0.2 s would otherwise hold a 0.5 s request for 4 s."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    body = json.dumps({"version": "x" * 20}).encode()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            for byte in body:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    client, _ = no_sleep_client(f"http://127.0.0.1:{port}", attempts=1, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ServerDown, match="last: timed out"):
        client.get("/version")
    assert time.monotonic() - started < 1.5
    listener.close()


def test_nothing_listening_is_down_after_the_attempts():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client, slept = no_sleep_client(f"http://127.0.0.1:{port}", attempts=3)
    with pytest.raises(ServerDown, match="Connection ?Refused"):
        client.get("/v1/models")
    assert len(slept) == 2


def test_a_server_serving_another_model_is_refused(server, untrained_checkpoint, tokenizer):
    with pytest.raises(ServerMismatch, match=r"serves .*tiny.*which is not --model"):
        OpenAIBackend(ServerSettings(base_url=server.base_url, **FAST), untrained_checkpoint, tokenizer, None)


def test_a_server_tokenizing_differently_is_refused(tiny_checkpoint, tokenizer):
    with FakeOpenAIServer(str(tiny_checkpoint), lambda text, special: [1, 2, 3]) as fake:
        with pytest.raises(ServerMismatch, match="tokenizes a probe differently"):
            backend_for(fake, tiny_checkpoint, tokenizer)


def test_base_urls_with_credentials_are_refused_and_none_are_shown():
    assert check_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    with pytest.raises(ValueError, match="--api-key-env"):
        check_base_url("http://user:secret@host:8000/v1")
    with pytest.raises(ValueError, match="http"):
        check_base_url("127.0.0.1:8000")
    assert redact_url("https://u:p@example.org:9/v1?key=1") == "https://example.org:9/v1"


# -- whole sessions -----------------------------------------------------------------------------------


def openai_session(suite, server, *arguments: str):
    return suite.runpytest_subprocess("--backend", "openai", "--base-url", server.base_url, "--report", "report.json",
                                      "--request-attempts", "2", "--request-timeout", "2", "-p", "no:cacheprovider",
                                      "--no-prediction-cache", *arguments)


def test_a_session_sends_the_key_from_the_environment_and_never_records_it(suite, server, monkeypatch):
    monkeypatch.setenv("MEDGATE_TEST_KEY", "sk-not-in-any-report")
    result = openai_session(suite, server, "--api-key-env", "MEDGATE_TEST_KEY", "--limit", "2")
    assert result.ret in (0, 1)  # made-up scores may fail the gates; every case must have run
    document = report_of(suite)
    assert document["status"] in ("passed", "failed") and not document["missing_cases"]
    assert {h.get("Authorization") for _, _, h in server.requests} == {"Bearer sk-not-in-any-report"}
    text = json.dumps(document) + "".join(p.read_text() for p in suite.path.glob("report.*"))
    assert "sk-not-in-any-report" not in text
    recorded = document["manifest"]["server"]
    assert recorded["base_url"] == server.base_url and recorded["concurrency"] == 8
    assert recorded["model_id"] == server.model_id and recorded["engine_version"] == "vllm fake-1"
    assert recorded["system_fingerprints"] == ["fp-fake"] and recorded["tokenize_probe"] == "agrees"
    assert recorded["scoring_methods"] == {"logprob_token_ids": len(document["cases"]), "echo": 0}
    assert document["manifest"]["backend"] == "openai"


def test_a_missing_key_variable_is_a_usage_error(suite, server):
    result = openai_session(suite, server, "--api-key-env", "MEDGATE_NO_SUCH_VARIABLE")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--api-key-env MEDGATE_NO_SUCH_VARIABLE: that environment variable is not set*"])


def test_a_server_failing_mid_run_leaves_an_incomplete_report_and_one_message(suite, server):
    # Two start-up probes (the controller's check and the backend's) and two groups answer; then 500s.
    server.fail_after("/v1/completions", 4, Fault(500, b'{"error": {"message": "engine dead"}}'))
    result = openai_session(suite, server, "--group-size", "4")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = report_of(suite)
    assert document["status"] == "incomplete" and document["missing_cases"]
    output = result.stdout.str()
    assert output.count("no usable answer after 2 attempts") <= 3  # the message, not one per case
    assert "Traceback" not in output


def test_cached_predictions_are_keyed_on_the_server_engine_and_scoring_method(suite, server):
    server.system_fingerprint = f"fp-{uuid.uuid4()}"  # unseen by any earlier run's cache entries

    def cache_counts(*arguments: str) -> dict[str, int]:
        suite.runpytest_subprocess("--backend", "openai", "--base-url", server.base_url, "--report", "report.json",
                                   "--limit", "2", "-p", "no:cacheprovider", *arguments)
        return report_of(suite)["manifest"]["prediction_cache"]

    assert cache_counts() == {"hits": 0, "misses": 4}
    assert cache_counts() == {"hits": 4, "misses": 0}
    assert cache_counts("--scoring", "echo") == {"hits": 0, "misses": 4}
    server.system_fingerprint += "-restarted-with-another-configuration"
    assert cache_counts() == {"hits": 0, "misses": 4}
