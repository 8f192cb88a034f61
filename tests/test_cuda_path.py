"""The CUDA path as far as a machine without a GPU can check it: refusals, device pinning, no retries.

The GPU itself is exercised on a GPU machine (README "Performance / GPU"); here, asking for CUDA
where there is none must be a clear, immediate error, never a slow run or a per-case failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medgate.backends import BackendSettings, cuda_available
from medgate.backends.export import ExportError, ensure_export
from medgate.models import resolve_model
from medgate.predictor import ModelLoadError, Predictor, PredictorSettings
from medgate.run import WorkerPlace, worker_device_id

no_cuda_here = pytest.mark.skipif(cuda_available(), reason="this machine has CUDA: the refusals do not apply")


def _torch_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@no_cuda_here
@pytest.mark.parametrize("backend, message", [
    ("onnxruntime", "*--device cuda: ONNX Runtime needs onnxruntime-gpu*EXTRAS=gpu,dev*"),
    ("torch", "*--device cuda: this torch*sees no CUDA device*"),
])
def test_device_cuda_without_cuda_is_a_usage_error_before_any_case(suite, backend, message):
    if backend == "torch" and _torch_has_cuda():
        pytest.skip("torch here has CUDA")
    result = suite.runpytest_subprocess("--device", "cuda", "--backend", backend, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (suite.path / "reports").exists()  # nothing ran, so no report claims otherwise


@pytest.mark.skipif(_torch_has_cuda(), reason="torch here has CUDA")
def test_cuda_export_without_cuda_torch_says_why(tiny_checkpoint, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "medgate.backends.export", str(tiny_checkpoint), str(tmp_path / "out"),
         "--device", "cuda", "--dtype", "fp16", "--fingerprint", "test"],
        capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 1
    assert "sees no CUDA device" in completed.stderr and "TORCH_SPEC" in completed.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("worker, visible, expected", [
    ("gw0", "0,1", 0), ("gw1", "0,1", 1), ("gw2", "0,1", 0), ("gw3", "0,1", 1),
    ("gw5", "3,4,7", 2), ("gw2", "5", 0),
])
def test_workers_are_pinned_round_robin_to_the_visible_gpus(monkeypatch, worker, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    place = WorkerPlace.from_workerinput({"workerid": worker, "workercount": 8})
    assert worker_device_id(place) == expected


def test_a_serial_run_uses_the_first_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert worker_device_id(WorkerPlace.from_workerinput(None)) == 0


def test_a_backend_that_failed_to_start_is_not_started_again(monkeypatch, tiny_checkpoint, tmp_path):
    attempts: list[Path] = []

    def failing_export(checkpoint: Path, *_: object, **__: object) -> Path:
        attempts.append(checkpoint)
        raise ExportError(f"ONNX export of {checkpoint} failed (exit 1): no GPU")

    monkeypatch.setattr("medgate.backends.export.ensure_export", failing_export)
    predictor = Predictor(PredictorSettings(model=resolve_model(f"{tiny_checkpoint}"), backend=BackendSettings()))
    with pytest.raises(ModelLoadError, match="starting the onnxruntime backend failed: ExportError: .*no GPU"):
        _ = predictor.backend
    with pytest.raises(ModelLoadError, match="no GPU.*not retried"):
        _ = predictor.backend
    assert attempts == [tiny_checkpoint]


def test_ensure_export_reports_a_failed_export_and_leaves_nothing(monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    if _torch_has_cuda():
        pytest.skip("torch here has CUDA: the export would succeed")
    with pytest.raises(ExportError, match="sees no CUDA device"):
        ensure_export(tiny_checkpoint, "fingerprint-for-test", "cuda", "fp16", quiet=True)
    leftovers = [path.name for path in (tmp_path / "cache" / "onnx").iterdir() if not path.name.endswith(".lock")]
    assert leftovers == []



@no_cuda_here
@pytest.mark.parametrize("command", ["parity", "bench"])
def test_parity_and_bench_on_cuda_without_cuda_stop_before_building_anything(command, capsys, monkeypatch, tmp_path):
    from medgate.cli import main

    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    assert main([command, "--model", "random:llama-3.2-1b", "--device", "cuda"]) == 2
    assert f"medgate {command}: --device cuda: ONNX Runtime needs onnxruntime-gpu" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # the 1B model was not built for nothing
