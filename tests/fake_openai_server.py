"""A loopback OpenAI-compatible server of our own, for the faults a real vLLM cannot be made to
produce on demand: 429 and 500 answers, malformed JSON, an answer that never comes.

It speaks just enough of vLLM's protocol for medgate's client (/v1/models, /version, /tokenize
with a real tokenizer, /v1/completions with logprob_token_ids, echo and generation) and answers
completions with made-up but well-formed numbers. Faults are scripted per path: `fail(path, ...)`
queues the next answers to that path; when the queue is empty the server answers normally.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int = 500
    body: bytes = b'{"error": {"message": "scripted failure"}}'
    delay: float = 0.0  # seconds before answering (longer than the client's timeout: a timeout)
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenAIServer:
    def __init__(self, model_id: str, encode: Callable[[str, bool], list[int]], *,
                 logprob_token_ids: bool = True, generated: list[int] | None = None) -> None:
        self.model_id = model_id
        self.encode = encode
        self.logprob_token_ids = logprob_token_ids
        self.generated = generated or []
        self.system_fingerprint = "fp-fake"
        self.faults: dict[str, deque[Fault]] = {}
        self.always: dict[str, Fault] = {}
        self.fail_from_count: dict[str, tuple[int, Fault]] = {}  # path -> (answers before failing, fault)
        self.counts: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail(self, path: str, *faults: Fault) -> None:
        with self.lock:
            self.faults.setdefault(path, deque()).extend(faults)

    def fail_always(self, path: str, fault: Fault) -> None:
        with self.lock:
            self.always[path] = fault

    def fail_after(self, path: str, answers: int, fault: Fault) -> None:
        """Answer `answers` more requests to `path` normally, then fail every one after."""
        with self.lock:
            self.fail_from_count[path] = (self.counts.get(path, 0) + answers, fault)

    def completions(self) -> list[dict[str, Any]]:
        return [body for path, body, _ in self.requests if path == "/v1/completions"]

    # -- answers -------------------------------------------------------------------------------------

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.model_id, "root": self.model_id,
                                                     "max_model_len": 2048}]}
        if path == "/version":
            return 200, {"version": "fake-1"}
        if path == "/tokenize":
            return 200, {"tokens": self.encode(body["prompt"], bool(body.get("add_special_tokens", True)))}
        if path == "/v1/completions":
            return self._completion(body)
        return 404, {"error": {"message": f"no route {path}"}}

    def _completion(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("model") != self.model_id:
            return 404, {"error": {"message": f"model {body.get('model')} does not exist"}}
        if "logprob_token_ids" in body and not self.logprob_token_ids:
            return 400, {"error": {"message": "unknown field logprob_token_ids"}}
        choices = []
        for index, prompt in enumerate(body["prompt"]):
            choice: dict[str, Any] = {"index": index, "text": "", "finish_reason": "length"}
            if "logprob_token_ids" in body:
                ids = body["logprob_token_ids"]
                # Made up: the label listed last is the likeliest, so the client's order is checked.
                choice["logprobs"] = {"top_logprobs": [{f"token_id:{t}": -1.0 - (len(ids) - k)
                                                        for k, t in enumerate(ids)}]}
            elif body.get("echo"):
                choice["logprobs"] = {"token_logprobs": [None] + [-0.5] * len(prompt)}
            else:
                choice["token_ids"] = list(self.generated[: body["max_tokens"]])
            choices.append(choice)
        return 200, {"id": "cmpl-fake", "object": "text_completion", "model": self.model_id, "choices": choices,
                     "system_fingerprint": self.system_fingerprint, "usage": {}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                with server.lock:
                    server.requests.append((self.path, body, dict(self.headers)))
                    seen = server.counts[self.path] = server.counts.get(self.path, 0) + 1
                    queued = server.faults.get(self.path)
                    fault = queued.popleft() if queued else server.always.get(self.path)
                    limit = server.fail_from_count.get(self.path)
                    if fault is None and limit is not None and seen > limit[0]:
                        fault = limit[1]
                if fault is not None:
                    time.sleep(fault.delay)
                    self._send(fault.status, fault.body, fault.headers)
                    return
                status, answer = server.answer(self.path, body)
                self._send(status, json.dumps(answer).encode(), {})

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

            do_GET = _serve
            do_POST = _serve

        return Handler
