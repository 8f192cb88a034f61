"""Checkpoint folders are untrusted: hostile copies of the tiny model, refused before anything is read.

Each hostile folder is tiny's own files copied into tmp, with one file swapped for a symlink out of
the folder, a device file, a fifo, custom code or a chat template that never ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medgate import tokenization
from medgate.checkpoint_files import CheckpointError, read_checkpoint_bytes
from medgate.fingerprint import checkpoint_fingerprint
from medgate.items import file_sha256
from medgate.models import ModelError, resolve_model

CHECKPOINT_FILES = ("config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
                    "tokenizer.json", "tokenizer_config.json")


def tiny_copy(tiny: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        shutil.copyfile(tiny / name, folder / name)
    return folder


def swap_symlink(folder: Path, name: str, target: Path | str) -> None:
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(target)


def add_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"open({str(folder / 'code-ran')!r}, 'w').close()\n")


def _outside_template(folder: Path) -> None:
    secret = folder.parent / "secret.txt"
    secret.write_text("MEDGATE_SECRET=1 {{ messages }}")
    swap_symlink(folder, "chat_template.jinja", secret)


HOSTILE = {
    "template -> /proc/self/environ": ("chat_template.jinja", lambda f: swap_symlink(f, "chat_template.jinja",
                                                                                    "/proc/self/environ")),
    "template -> a file outside": ("chat_template.jinja", _outside_template),
    "config -> a file outside": ("config.json", lambda f: (shutil.move(f / "config.json", f.parent / "c.json"),
                                                          swap_symlink(f, "config.json", f.parent / "c.json"))),
    "weights -> /dev/zero": ("model.safetensors", lambda f: swap_symlink(f, "model.safetensors", "/dev/zero")),
    "tokenizer is a fifo": ("tokenizer.json", lambda f: ((f / "tokenizer.json").unlink(),
                                                         os.mkfifo(f / "tokenizer.json"))),
    "a dangling symlink": ("added_tokens.json", lambda f: swap_symlink(f, "added_tokens.json", f / "nowhere")),
    "custom code": ("config.json", add_code),
    "template that never ends": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")),
    "template that floods": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}")),
    "template that multiplies in C": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{{ 'x' * 10 ** 12 }}")),
    "a huge template": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text("x" * (2 << 20))),
    "template that raises": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{{ raise_exception('nope') }}")),
    "template calling what is not there": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{{ undefined_fn() }}")),
    "template dividing by zero": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{{ 1 / 0 }}")),
    "template recursing without end": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{% macro m(x) %}{{ m(x) }}{% endmacro %}{{ m(1) }}")),
    "a negative context length": ("config.json", lambda f: (f / "config.json").write_text(json.dumps(
        {**json.loads((f / "config.json").read_text()), "max_position_embeddings": -5}))),
    "a config.json that is no JSON": ("config.json", lambda f: (f / "config.json").write_text('{"model_type": ')),
    "template without the question": ("chat_template.jinja", lambda f: (f / "chat_template.jinja").write_text(
        "{% for m in messages %}<s>user: {{ m.text }}{% endfor %} assistant:")),
}

GEMMA_LIKE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
              "{% endif %}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>")


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_folder_is_refused_naming_the_file(case, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(tokenization, "RENDER_SECONDS", 1.0)
    name, make_hostile = HOSTILE[case]
    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    make_hostile(folder)
    with pytest.raises(ModelError) as refused:
        resolve_model(str(folder))
    message = str(refused.value)
    assert message.startswith(f"refusing checkpoint folder {folder}: ")
    assert str(folder / name) in message
    assert "MEDGATE_SECRET" not in message and "PATH=" not in message
    assert not (folder / "code-ran").exists()


def test_a_plain_copy_and_a_symlink_inside_the_folder_are_accepted(tiny_checkpoint, tmp_path):
    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "chat_template.jinja").write_text("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n"
                                                "{% endfor %}<assistant>")
    shutil.move(folder / "tokenizer.json", folder / "tok.json")
    swap_symlink(folder, "tokenizer.json", "tok.json")
    assert resolve_model(str(folder)).kind == "local"


def test_a_template_refusing_system_messages_gets_the_system_text_in_the_user_message(suite, tiny_checkpoint,
                                                                                       tmp_path):
    from medgate.prompts import RenderedPrompt
    from medgate.tokenization import TextTokenizer

    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "chat_template.jinja").write_text(GEMMA_LIKE)
    assert resolve_model(str(folder)).kind == "local"
    tokenizer = TextTokenizer(folder)
    text = tokenizer.prompt_text(RenderedPrompt(system="Be brief.", user="Question?"))
    assert tokenizer.refuses_system_messages and text == "<user>Be brief.\n\nQuestion?\n<assistant>"
    result = suite.runpytest_subprocess(f"--model={folder}", "--prompts=p1", "--dataset=sample-en",
                                        "--report=r.json", "-p", "no:cacheprovider", "--no-prediction-cache")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    report = json.loads((suite.path / "r.json").read_text())
    assert report["manifest"]["model"]["system_folded"] is True and len(report["cases"]) == 48


def test_every_read_checks_the_file_even_without_the_audit(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    swap_symlink(folder, "tokenizer_config.json", "/proc/self/environ")
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        read_checkpoint_bytes(folder, "tokenizer_config.json")
    (folder / "big.json").write_bytes(b" " * 2048)
    with pytest.raises(CheckpointError, match="larger than"):
        read_checkpoint_bytes(folder, "big.json", limit=1024)


def test_the_refusal_comes_before_any_case_runs(suite, tiny_checkpoint, tmp_path):
    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    swap_symlink(folder, "chat_template.jinja", "/proc/self/environ")
    result = suite.runpytest_subprocess(f"--model={folder}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert f"{folder / 'chat_template.jinja'} is a symlink to /proc/self/environ" in error
    assert "passed" not in result.stdout.str() and "PATH=" not in result.stdout.str() + error
    assert not list(suite.path.glob("reports/*.json"))


def test_transformers_never_runs_the_folders_code_even_past_the_audit(tiny_checkpoint, tmp_path):
    """trust_remote_code is pinned to False: for a model type of its own, transformers would otherwise ask
    on stdin, and a `y` there imported evil.py. Run with the audit switched off, answering `y`."""
    pytest.importorskip("transformers")
    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    add_code(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "evil-llama"}))
    script = ("import sys\nfrom pathlib import Path\nfrom medgate.backends import torch_backend\n"
              "torch_backend.audit_checkpoint = lambda directory: None\n"
              "torch_backend.TorchLogitsModel(Path(sys.argv[1]), 'cpu', 'fp32', 1, 0, 64)\n")
    completed = subprocess.run([sys.executable, "-c", script, str(folder)], input="y\n", capture_output=True,
                               text=True, env={**os.environ, "HF_HOME": str(tmp_path / "hf")}, timeout=300)
    assert completed.returncode != 0 and "trust_remote_code" in completed.stderr
    assert not (folder / "code-ran").exists()


# -- fingerprints hash content, never names ---------------------------------------------------------


def _flip_a_weight(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor: same size, other weights
    path.write_bytes(bytes(data))


def test_a_symlink_named_like_a_hash_is_hashed_not_believed(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    genuine = checkpoint_fingerprint(tiny_checkpoint)
    weights_hash = file_sha256(tiny_checkpoint / "model.safetensors")
    folder = tiny_copy(tiny_checkpoint, tmp_path / "spoof")
    (folder / "blobs").mkdir()
    shutil.move(folder / "model.safetensors", folder / "blobs" / weights_hash)
    _flip_a_weight(folder / "blobs" / weights_hash)
    swap_symlink(folder, "model.safetensors", Path("blobs") / weights_hash)
    assert checkpoint_fingerprint(folder) != genuine


def _hub_snapshot(tiny: Path, root: Path) -> Path:
    repository = root / "models--org--tiny"
    snapshot = repository / "snapshots" / "0123abcd"
    (repository / "blobs").mkdir(parents=True)
    tiny_copy(tiny, snapshot)
    digest = file_sha256(tiny / "model.safetensors")
    shutil.move(snapshot / "model.safetensors", repository / "blobs" / digest)
    swap_symlink(snapshot, "model.safetensors", Path("../../blobs") / digest)
    return snapshot


def test_a_hub_blob_is_known_by_its_name_only_when_whole(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    genuine = checkpoint_fingerprint(tiny_checkpoint)
    snapshot = _hub_snapshot(tiny_checkpoint, tmp_path / "hub")
    assert checkpoint_fingerprint(snapshot) == genuine
    resolve_model(str(snapshot))  # the blob symlinks leave the snapshot, into its own repository's blobs
    blob = Path(os.path.realpath(snapshot / "model.safetensors"))
    with blob.open("r+b") as handle:
        handle.truncate(blob.stat().st_size - 4)  # an interrupted download: hashed, so no longer tiny
    assert checkpoint_fingerprint(snapshot) != genuine


def test_a_rewritten_file_is_hashed_again_even_with_its_old_size_and_mtime(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGATE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tiny_copy(tiny_checkpoint, tmp_path / "ckpt")
    before = checkpoint_fingerprint(folder)
    weights = folder / "model.safetensors"
    status = weights.stat()
    _flip_a_weight(weights)
    os.utime(weights, ns=(status.st_atime_ns, status.st_mtime_ns))  # as `cp -p` or rsync would leave it
    assert weights.stat().st_size == status.st_size
    assert checkpoint_fingerprint(folder) != before
