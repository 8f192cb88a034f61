"""Damaged caches are rebuilt, never trusted and never the end of a run (private MEDGATE_CACHE_DIR each)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from medgate.backends.base import ScoreResult
from medgate.backends.export import (
    COMPLETE_MARKER,
    DamagedExportWarning,
    ExportError,
    ensure_export,
    export_key,
    export_problem,
)
from medgate.fingerprint import checkpoint_fingerprint
from medgate.paths import cache_dir
from medgate.prediction_cache import PredictionCache, PredictionCacheWarning


@pytest.fixture(scope="module")
def tiny_export(tiny_checkpoint: Path) -> tuple[Path, str]:
    """tiny's export in the shared cache (made once by whichever test needs it first)."""
    fingerprint = checkpoint_fingerprint(tiny_checkpoint)
    return ensure_export(tiny_checkpoint, fingerprint, "cpu", "fp32", quiet=True), fingerprint


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def test_a_truncated_cached_export_is_rebuilt(tiny_checkpoint, tiny_export, tmp_path, monkeypatch):
    shared, fingerprint = tiny_export
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    target = cache_dir() / "onnx" / export_key(fingerprint, "cpu", "fp32")
    shutil.copytree(shared, target)
    assert export_problem(target, fingerprint) is None
    size = (target / "model.onnx").stat().st_size
    _truncate(target / "model.onnx")
    assert "model.onnx has" in str(export_problem(target, fingerprint))
    with pytest.warns(DamagedExportWarning, match="rebuilding the cached ONNX export"):
        assert ensure_export(tiny_checkpoint, fingerprint, "cpu", "fp32", quiet=True) == target
    assert export_problem(target, fingerprint) is None and (target / "model.onnx").stat().st_size == size


def test_a_damaged_export_given_as_the_model_is_an_error_naming_the_file(tiny_export, tmp_path):
    shared, fingerprint = tiny_export
    folder = tmp_path / "export"
    shutil.copytree(shared, folder)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:-1] + b"\0")  # same size
    with pytest.raises(ExportError, match=rf"{folder / 'model.onnx'} is not the file the export wrote"):
        ensure_export(folder, fingerprint, "cpu", "fp32", quiet=True)
    (folder / COMPLETE_MARKER).write_text("{")
    with pytest.raises(ExportError, match="unreadable or from an older medgate"):
        ensure_export(folder, fingerprint, "cpu", "fp32", quiet=True)


RESULT = ScoreResult((-1.0, -2.0), 0, False)


def _filled(path: Path) -> None:
    cache = PredictionCache(path)
    cache.put_many([(f"key{i}", RESULT) for i in range(2000)])
    cache.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed pages"])
def test_a_damaged_prediction_cache_is_rebuilt_with_a_warning(damage, tmp_path):
    path = tmp_path / "predictions.sqlite"
    _filled(path)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:
        path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))
    with pytest.warns(PredictionCacheWarning, match="is damaged"):
        cache = PredictionCache(path)
        cache.get_many([f"key{i}" for i in range(2000)])
        cache.put_many([("fresh", RESULT)])
    assert cache.get_many(["fresh"]) == {"fresh": RESULT}
    assert sqlite3.connect(path).execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_run_over_a_damaged_prediction_cache_warns_and_reports(suite, tmp_path, monkeypatch, tiny_export):
    private = tmp_path / "cache"
    private.mkdir()
    for shared in ("models", "onnx"):  # tiny and its export, read-only here; the poisoned file is private
        (private / shared).symlink_to(cache_dir() / shared)
    (private / "predictions.sqlite").write_bytes(b"\0garbage" * 512)
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(private))
    report = tmp_path / "report.json"
    result = suite.runpytest_subprocess("--dataset=sample-en", "--limit=6", f"--report={report}", "-p",
                                        "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert "is damaged" in output and report.is_file()
