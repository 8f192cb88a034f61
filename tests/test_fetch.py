"""`medgate fetch` against a real HTTP server on loopback serving ../shared/datasets/raw (no mocks)."""

import contextlib
import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medgate.cli import main
from medgate.datasets import load_dataset, registry
from medgate.datasets.download import fetch_datasets
from medgate.datasets.errors import FetchError


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve(directory: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """A real HTTP server on a free loopback port, serving `directory`, for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(shared_raw) -> Iterator[str]:
    with serve(shared_raw) as base:
        yield base


@pytest.fixture
def tampered_mirror(shared_raw, tmp_path) -> Iterator[str]:
    """The upstream layout with one byte changed in MedQA."""
    root = tmp_path / "tampered"
    target = root / "medqa_usmle/MedQA_USMLE_test.jsonl"
    target.parent.mkdir(parents=True)
    data = bytearray((shared_raw / "medqa_usmle/MedQA_USMLE_test.jsonl").read_bytes())
    data[1000] ^= 0x01
    target.write_bytes(bytes(data))
    with serve(root) as base:
        yield base


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_fetch_all_reproduces_the_upstream_files_byte_for_byte(mirror, shared_raw, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["fetch", "all", "--data-dir", str(data), "--mirror", mirror]) == 0
    expected = sorted({Path(f.path) for s in registry().values() if not s.bundled for f in s.files})
    assert files_under(data) == expected
    for relative in expected:
        assert (data / relative).read_bytes() == (shared_raw / relative).read_bytes(), relative
    out = capsys.readouterr()
    assert "medqa: " in out.out and "downloaded (2075679 bytes, sha256 verified)" in out.out
    assert f"<- {mirror}/medqa_usmle/MedQA_USMLE_test.jsonl" in out.err
    # the fetched layout is what the converters read
    assert len(load_dataset("headqa-es", data).items) == 2675


def test_second_fetch_keeps_verified_files(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["fetch", "pubmedqa", "--data-dir", str(data), "--mirror", mirror]) == 0
    stamp = (data / "pubmedqa/data/ori_pqal.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["fetch", "pubmedqa", "--data-dir", str(data), "--mirror", mirror]) == 0
    assert capsys.readouterr().out.count("already present (sha256 verified)") == 2
    assert (data / "pubmedqa/data/ori_pqal.json").stat().st_mtime_ns == stamp


def test_mirror_from_the_environment(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_DATASET_MIRROR", mirror)
    monkeypatch.setenv("MEDGATE_DATA_DIR", str(tmp_path / "env-data"))
    assert main(["fetch", "mmlu-anatomy"]) == 0
    assert files_under(tmp_path / "env-data") == [Path("mmlu_medical/test/anatomy_test.csv")]


def test_tampered_file_is_rejected_and_nothing_is_left(tampered_mirror, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["fetch", "medqa", "--data-dir", str(data), "--mirror", tampered_mirror]) == 1
    error = capsys.readouterr().err
    assert "medgate fetch: dataset 'medqa': could not fetch medqa_usmle/MedQA_USMLE_test.jsonl" in error
    assert "sha256 mismatch: expected c3b905ccfa66" in error and "the file was not saved" in error
    assert files_under(data) == []


def test_tampered_download_does_not_replace_a_present_file(tampered_mirror, shared_raw, tmp_path):
    data = tmp_path / "data"
    target = data / "medqa_usmle/MedQA_USMLE_test.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copyfile(shared_raw / "medqa_usmle/MedQA_USMLE_test.jsonl", target)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_datasets([registry()["medqa"]], data, mirror=tampered_mirror, force=True)
    assert target.read_bytes() == (shared_raw / "medqa_usmle/MedQA_USMLE_test.jsonl").read_bytes()
    assert files_under(data) == [Path("medqa_usmle/MedQA_USMLE_test.jsonl")]


def test_missing_file_on_the_server_is_a_clear_error(tmp_path):
    (tmp_path / "empty-mirror").mkdir()
    with serve(tmp_path / "empty-mirror") as base:
        expected = r"'pubmedqa': could not fetch pubmedqa/data/ori_pqal.json .*ori_pqal.json: HTTP 404"
        with pytest.raises(FetchError, match=expected):
            fetch_datasets([registry()["pubmedqa"]], tmp_path / "data", mirror=base)
    assert files_under(tmp_path / "data") == []


def test_unreachable_server_is_a_clear_error(tmp_path, capsys):
    with serve(tmp_path) as base:
        closed = base  # once the block ends nothing listens on that port any more
    assert main(["fetch", "medmcqa", "--data-dir", str(tmp_path / "data"), "--mirror", closed]) == 1
    assert "cannot connect" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() or files_under(tmp_path / "data") == []


def test_connection_cut_mid_file_leaves_nothing(tmp_path):
    """A server that announces more bytes than it sends (a dropped connection)."""

    class Truncating(QuietHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True

    with serve(tmp_path, Truncating) as base:
        with pytest.raises(FetchError, match="could not fetch .*got 100 bytes, the server announced 5000"):
            fetch_datasets([registry()["mmlu-anatomy"]], tmp_path / "data", mirror=base)
    assert files_under(tmp_path / "data") == []


def test_unknown_name_lists_the_known_ones(capsys):
    assert main(["fetch", "medqa", "no-such-set"]) == 2
    assert "unknown dataset 'no-such-set'; known datasets: headqa-dev-en" in capsys.readouterr().err


def test_bundled_dataset_needs_no_fetch(tmp_path, capsys):
    assert main(["fetch", "sample-es", "--data-dir", str(tmp_path)]) == 0
    assert "sample-es: bundled with medgate, nothing to fetch" in capsys.readouterr().out
    assert files_under(tmp_path) == []


def test_a_server_dripping_bytes_is_given_up_on_and_leaves_not_even_a_folder(tmp_path, monkeypatch):
    """One byte every 0.05 s: 20 B/s, far below the floor, however long each read waits."""
    import time

    from medgate.datasets import download

    monkeypatch.setattr(download, "TIMEOUT_S", 0.5)

    class Dripping(QuietHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

    started = time.monotonic()
    with serve(tmp_path, Dripping) as base:
        with pytest.raises(FetchError, match="the download ran slower than 10 kB/s"):
            fetch_datasets([registry()["mmlu-anatomy"]], tmp_path / "data" / "new", mirror=base)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "data").exists()  # neither the .part file nor the folders made for it


def test_sigterm_during_a_download_removes_the_partial_file(tmp_path):
    """What a CI cancel or `timeout` sends: the fetch unwinds as after Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    class Slow(QuietHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"x" * 100)
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

    data = tmp_path / "data"
    with serve(tmp_path, Slow) as base:
        process = subprocess.Popen([sys.executable, "-m", "medgate", "fetch", "mmlu-anatomy", "--data-dir", str(data),
                                    "--mirror", base], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not list(data.rglob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(data.rglob("*.part")), "the download never started"
        process.send_signal(signal.SIGTERM)
        _, error = process.communicate(timeout=30)
    assert process.returncode == 130 and "medgate: interrupted" in error
    assert not data.exists()
