"""The tiny model (reproducible, good on the sample items) and the two backends agreeing on it."""

import json
from pathlib import Path

import numpy as np
import pytest

from medgate.backends import BackendSettings, create_backend
from medgate.cases import expand_cases
from medgate.datasets import default_data_dir, load_dataset
from medgate.fingerprint import checkpoint_fingerprint
from medgate.models import ModelRef
from medgate.predictor import Predictor, PredictorSettings
from medgate.tiny import TinyRecipe, build_tiny
from medgate.tokenization import TextTokenizer

pytestmark = pytest.mark.slow


def sample_cases(prompts):
    datasets = [load_dataset(name, default_data_dir()) for name in ("sample-en", "sample-es")]
    return expand_cases(datasets, ["original"], prompts, seed=0, group_size=64)


def predict(checkpoint: Path, backend: str, prompts, **settings):
    predictor = Predictor(PredictorSettings(ModelRef("test", "local", path=checkpoint),
                                            BackendSettings(name=backend, threads=2), **settings))
    return predictor.predict(sample_cases(prompts))


def test_tiny_build_is_reproducible(tiny_checkpoint, tmp_path):
    rebuilt = build_tiny(TinyRecipe(), tmp_path / "again", quiet=True)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (rebuilt / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name


def test_tiny_knows_the_sample_items_under_the_default_prompts(tiny_checkpoint):
    summary = json.loads((tiny_checkpoint / "medgate_tiny.json").read_text())
    assert summary["sample_accuracy_default_prompt"] >= 0.9
    records = predict(tiny_checkpoint, "onnxruntime", ["p0", "j0"])
    by_prompt = {p: [r for r in records if r["prompt"] == p] for p in ("p0", "j0")}
    assert np.mean([r["correct"] for r in by_prompt["p0"]]) >= 0.9
    assert np.mean([r["schema_valid"] for r in by_prompt["j0"]]) >= 0.9
    assert np.mean([r["correct"] for r in by_prompt["j0"]]) >= 0.9


def test_untrained_tiny_answers_near_chance(untrained_checkpoint):
    records = predict(untrained_checkpoint, "onnxruntime", ["p0"])
    assert np.mean([r["correct"] for r in records]) < 0.5


def test_onnxruntime_and_torch_agree_on_every_label(tiny_checkpoint):
    prompts = ["p0", "p1", "p2", "j0", "j1"]
    ort = predict(tiny_checkpoint, "onnxruntime", prompts)
    reference = predict(tiny_checkpoint, "torch", prompts)
    assert [r["case_id"] for r in ort] == [r["case_id"] for r in reference]
    assert [r["predicted_label"] for r in ort] == [r["predicted_label"] for r in reference]
    assert [r.get("raw_output") for r in ort] == [r.get("raw_output") for r in reference]
    worst = max(abs(a - b) for x, y in zip(ort, reference) if x["mode"] == "loglik"
                for a, b in zip(x["scores"].values(), y["scores"].values()))
    assert worst < 1e-4


def test_parity_check_is_recorded(tiny_checkpoint):
    settings = PredictorSettings(ModelRef("test", "local", path=tiny_checkpoint),
                                 BackendSettings(threads=2), parity_backend="torch")
    predictor = Predictor(settings)
    records = predictor.predict(sample_cases(["p0"]))
    stats = predictor.manifest()["stats"]
    assert stats["parity_cases"] == len(records) == 96
    assert stats["parity_label_disagreements"] == 0
    assert 0 < stats["parity_max_abs_diff"] < 1e-4


def test_rewritten_graph_matches_full_logits_and_multi_token_scoring(tiny_checkpoint):
    backend = create_backend(BackendSettings(threads=2), tiny_checkpoint, checkpoint_fingerprint(tiny_checkpoint), 0)
    tokenizer = TextTokenizer(tiny_checkpoint)
    prompt = tokenizer.encode("Question: Which drug reverses opioid overdose?\nAnswer:", True)
    continuation = tokenizer.encode(" Naloxone hydrochloride", False)
    assert len(continuation) > 1
    from medgate.backends.base import ScoreRequest

    multi = backend.score([ScoreRequest(tuple(prompt), (tuple(continuation),))])[0].logprobs[0]
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + continuation])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    expected = sum(float(logprobs[len(prompt) - 1 + i, token]) for i, token in enumerate(continuation))
    assert multi == pytest.approx(expected, abs=1e-4)


def test_grouped_query_rewrite_leaves_every_output_bit_for_bit(tiny_checkpoint, tmp_path, monkeypatch):
    """The tiny model shares each key/value head between two query heads: its export as Optimum
    writes it (LM-head rewrite only) against the same graph with grouped-query attention, on a
    padded batch after a past, every output compared exactly."""
    import shutil

    import onnx
    import onnxruntime

    from medgate.backends import export, graph

    monkeypatch.setattr(graph, "group_query_heads", lambda *args: 0)
    export.export(tiny_checkpoint, tmp_path / "plain", "cpu", "fp32", "test")
    monkeypatch.undo()
    plain = tmp_path / "plain" / "model.onnx"
    grouped = tmp_path / "grouped.onnx"
    shutil.copyfile(plain, grouped)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    layers, heads, kv_heads = (config[k] for k in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads"))
    assert heads > kv_heads
    assert graph.prepare_graph(grouped, heads, kv_heads).grouped_attention_matmuls == 2 * layers
    expands = {path.name: sum(n.op_type == "Expand" for n in onnx.load(str(path)).graph.node) for path in (plain, grouped)}
    assert expands["model.onnx"] - expands["grouped.onnx"] == 2 * layers  # the others build masks and indices

    sessions = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in (plain, grouped)]
    rng = np.random.default_rng(0)
    batch, past, new = 3, 7, 5
    mask = np.ones((batch, past + new), dtype=np.int64)
    mask[1, :4] = 0  # a left-padded past
    mask[2, -2:] = 0  # right-padded new tokens
    feed = {"input_ids": rng.integers(0, config["vocab_size"], (batch, new)),
            "attention_mask": mask,
            "position_ids": np.clip(np.cumsum(mask, axis=1) - 1, 0, None)[:, past:],
            "logits_index": np.array([[4, 0], [3, 4], [2, 1]])}
    for value in sessions[0].get_inputs():
        if value.name.startswith("past_key_values."):
            feed[value.name] = rng.standard_normal((batch, kv_heads, past, value.shape[3])).astype(np.float32)
    outputs = [session.run(None, feed) for session in sessions]
    assert len(outputs[0]) == 1 + 2 * layers
    for before, after in zip(*outputs):
        np.testing.assert_array_equal(before, after)


def test_random_weights_model_builds_exports_and_agrees_across_backends():
    from medgate.models import ModelError, resolve_model

    with pytest.raises(ModelError, match="unknown random model config 'nope'; known: .*llama-3.1-8b"):
        resolve_model("random:nope")
    reference = resolve_model("random:llama-smoke")
    cases = sample_cases(["p0", "j0"])[:20] + sample_cases(["p0", "j0"])[-20:]
    outputs = {}
    for backend in ("onnxruntime", "torch"):
        predictor = Predictor(PredictorSettings(reference, BackendSettings(name=backend, threads=2)))
        outputs[backend] = predictor.predict(cases)
    assert [r["predicted_label"] for r in outputs["onnxruntime"]] == [r["predicted_label"] for r in outputs["torch"]]
    config = json.loads((predictor.checkpoint / "config.json").read_text())
    assert (config["vocab_size"], config["num_key_value_heads"]) == (32000, 2)
    assert config["tie_word_embeddings"]  # the export of a tied model (Llama-3.2) is what this covers
