"""`medgate parity` and `medgate bench` end to end on small workloads (timings are not asserted)."""

import importlib.util
import json

import pytest

from medgate.cli import main

pytestmark = pytest.mark.slow


def test_parity_command_agrees_on_every_label_and_reports_differences(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "parity.json"
    code = main(["parity", f"--model={tiny_checkpoint}", "--dataset", "sample-en", "--limit", "12",
                 "--prompts", "p0,j0", "--perturbations", "relabel_roman", "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["passed"]
    assert result["cases"] == 48 and result["label_agreement"] == 1.0
    assert 0 < result["max_abs_logit_diff"] < 1e-4 and result["max_abs_logprob_diff"] < 1e-4
    assert result["generations_identical"] == result["generations"] == 24
    assert result["execution_provider"] == "CPUExecutionProvider"
    assert "label agreement" in capsys.readouterr().out


def test_bench_runs_every_contender_on_the_same_items_and_they_agree(tiny_checkpoint, tmp_path):
    contenders = "medgate,transformers"
    if importlib.util.find_spec("lm_eval") is not None:
        contenders += ",lm_eval"
    out = tmp_path / "bench.json"
    code = main(["bench", f"--model={tiny_checkpoint}", "--dataset", "sample-en", "--limit", "12",
                 "--contenders", contenders, "--no-warmup", "--keep", str(tmp_path / "work"), "--out", str(out)])
    document = json.loads(out.read_text())
    assert code == 0
    assert document["items"] == document["cases"] == 12 and document["prompt_tokens"] > 0
    for name in contenders.split(","):
        entry = document["contenders"][name]
        assert entry["cases_per_s"] > 0 and entry["tokens_per_s"] > 0 and entry["eval_cases_per_s"] > 0
    assert set(document["ratios"]) == set(contenders.split(",")) - {"medgate"}
    assert all(value == 1.0 for value in document["agreement"].values())
    assert document["accuracy"]["medgate"] >= 0.9  # the sample items under p0: tiny knows them
    assert document["matmul_fp32_gflops"] > 0 and document["contenders"]["medgate"]["achieved_gflops"] > 0


def test_bench_gives_every_contender_each_case_of_the_perturbed_prompts(tiny_checkpoint, tmp_path):
    """Multi-token labels (roman numerals) and a second prompt: the transformers loop scores them as
    medgate does, and medgate computes the items' shared openings once."""
    out = tmp_path / "bench.json"
    code = main(["bench", f"--model={tiny_checkpoint}", "--dataset", "sample-en", "--limit", "4",
                 "--perturbations", "original,relabel_roman,shuffle_options", "--prompts", "p0,p1",
                 "--contenders", "medgate,transformers", "--no-warmup", "--keep", str(tmp_path / "work"),
                 "--out", str(out)])
    document = json.loads(out.read_text())
    assert code == 0
    assert document["items"] == 4 and document["cases"] == 4 * 3 * 2
    assert document["agreement"] == {"medgate~transformers": 1.0}
    medgate = document["contenders"]["medgate"]
    assert 0 < medgate["tokens_computed"] < document["prompt_tokens"]
    lines = (tmp_path / "work" / "prompts.jsonl").read_text().splitlines()
    assert len(lines) == 24 and all('"add_special_tokens": true' in line for line in lines)  # tiny: no chat template


def test_bench_refuses_generation_for_the_scoring_contenders(capsys):
    assert main(["bench", "--mode", "generate", "--prompts", "j0"]) == 2
    assert "the other contenders score log-likelihood prompts only" in capsys.readouterr().err
    assert main(["bench", "--mode", "generate"]) == 2  # the default prompt p0 is a log-likelihood one
    assert "--prompts p0 selects no prompt for --mode generate" in capsys.readouterr().err


def test_parity_with_and_without_prefix_sharing_on_every_perturbation(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from medgate import parity

    monkeypatch.setattr(parity, "PROGRESS_EVERY_S", 0.0)  # a line after every group
    out = tmp_path / "sharing.json"
    code = main(["parity", f"--model={tiny_checkpoint}", "--dataset", "sample-en", "--limit", "3",
                 "--prompts", "all", "--perturbations", "all", "--prefix-sharing", "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["passed"]
    assert result["label_agreement"] == 1.0 and result["max_abs_logprob_diff"] <= 1e-4
    assert result["generations_identical"] == result["generations"] > 0
    shared, whole = result["token_work"]["true"], result["token_work"]["false"]
    assert shared["loglik"]["presented"] == whole["loglik"]["presented"] == whole["loglik"]["computed"]
    assert shared["loglik"]["computed"] <= 0.5 * shared["loglik"]["presented"]
    printed = capsys.readouterr()
    assert "tokens computed" in printed.out
    progress = [line for line in printed.err.splitlines() if line.startswith("[parity] ")]
    assert progress[-1].startswith(f"[parity] whole prompts: {result['cases']:,} of {result['cases']:,} cases")
    assert any(line.startswith("[parity] shared prefixes: ") for line in progress)


def test_bench_refuses_unknown_contenders(capsys):
    assert main(["bench", "--contenders", "medgate,vllm"]) == 2
    assert "--contenders" in capsys.readouterr().err


def test_prediction_cache_benchmark_times_a_first_run_and_verified_reruns(tiny_checkpoint, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cache-bench.json"
    completed = subprocess.run(
        [sys.executable, "bench/prediction_cache.py", "--repeat", "2", "--out", str(out), "--",
         "--dataset", "sample-en", "--limit", "8", "--mode", "both"],
        cwd=root, capture_output=True, text=True, check=False, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["cases"] == 16 and len(result["rerun_s"]) == 2
    assert result["ratio"] == pytest.approx(result["first_s"] / result["rerun_median_s"], rel=0.01)
    assert result["ratio_bound"] == pytest.approx(result["first_s"] / result["bare_pytest_s"], rel=0.01)
    assert "all 16 from the cache, same predictions" in completed.stdout


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.4e12), ("NVIDIA H100 PCIe", 756.0e12), ("NVIDIA H100 NVL", 835.0e12),
    ("NVIDIA H200", 989.4e12), ("NVIDIA H200 NVL", 835.0e12), ("NVIDIA A100-SXM4-80GB", 312.0e12),
    ("NVIDIA A10", 125.0e12), ("NVIDIA L40S", 362.0e12), ("NVIDIA L4", 121.0e12), ("Tesla T4", None), (None, None),
])
def test_gpu_peak_is_found_from_the_names_nvidia_smi_prints(name, peak):
    from medgate.bench.command import peak_flops

    assert peak_flops(name) == peak


def test_gpu_acceptance_script_runs_its_steps_on_the_cpu(tiny_checkpoint, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(
        [sys.executable, "bench/gpu_acceptance.py", "--out", str(tmp_path), "--device", "cpu", "--small", "tiny",
         "--steps", "env,suite,workers", "--worker-perturbations", "none"],
        cwd=root, capture_output=True, text=True, check=False, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["suite"]["execution_provider"] == "CPUExecutionProvider" and summary["suite"]["cases"] == 96
    assert summary["workers"]["cases"] == 192 and summary["workers"]["identical_predictions"] is True
    assert summary["env"]["onnxruntime"] and "CPUExecutionProvider" in summary["env"]["providers"]
