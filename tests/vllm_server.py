"""A real vLLM (CPU build) server on loopback for the tests of `--backend openai`.

It needs its own environment (`make test` builds .venv-vllm: vLLM wants transformers 5) and a model
its CPU attention accepts (SmolLM2, built by `make test` into build/smollm2; the tiny model's
head_dim 16 is refused). It takes one to two minutes to start on two cores, so the test session's
controller starts it at configure time, in the background, and the tests wait for it only when
they need it (tests/conftest.py); it is stopped when the session ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

VLLM_PYTHON = "MEDGATE_VLLM_PYTHON"  # the vLLM environment's python (set by `make test`)
SMOLLM2 = "MEDGATE_SMOLLM2"  # the SmolLM2 checkpoint folder (set by `make test`)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def missing_parts() -> str | None:
    """Why no vLLM server can be started here, or None."""
    python, model = os.environ.get(VLLM_PYTHON), os.environ.get(SMOLLM2)
    if not python or not Path(python).is_file():
        return f"no vLLM environment (${VLLM_PYTHON}; `make test` builds .venv-vllm and sets it)"
    if not model or not (Path(model) / ".complete").is_file():
        return f"no SmolLM2 checkpoint (${SMOLLM2}; `make test` builds build/smollm2 and sets it)"
    return None


class VllmServer:
    def __init__(self, python: str, model: str, log: Path, kv_cache_gib: int = 2) -> None:
        self.python = python
        self.model = model
        self.log = log
        self.kv_cache_gib = kv_cache_gib
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib), "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        # The `vllm` script looks for a distribution named vllm (this one is vllm-cpu): use the module.
        command = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                   "--dtype", "float32", "--max-model-len", "2048", "--host", "127.0.0.1",
                   "--port", str(self.port), "--enforce-eager"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as handle:
            # Its own process group: stopping it stops the engine process it forks as well.
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def describe(self) -> dict[str, object]:
        assert self.process is not None
        return {"url": self.base_url, "pid": self.process.pid, "log": str(self.log)}

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass


def log_tail(log: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(pid: int) -> bool:
    """Whether `pid` runs (an exited child of another process stays a zombie until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_ready(described: dict[str, object], timeout: float = 900.0) -> str:
    """Wait until the server lists its model; its base URL. Fails with the log's tail if it died."""
    url, pid = str(described["url"]), int(described["pid"])  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as answer:
                if json.loads(answer.read()).get("data"):
                    return url
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if not alive(pid):
            raise RuntimeError(f"the vLLM server exited while starting:\n{log_tail(str(described['log']))}")
        time.sleep(2)
    raise RuntimeError(f"the vLLM server did not start within {timeout:.0f} s:\n{log_tail(str(described['log']))}")
