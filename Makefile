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

.PHONY: setup suite suite-full test bench clean

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

test: $(STAMP)
	$(BIN)/medgate make-tiny
	$(BIN)/pytest tests/ -n 2 $(PYTEST_ARGS)

# medgate against a plain transformers loop and lm-evaluation-harness (see README "Performance").
bench: $(STAMP)
	$(BIN)/medgate make-tiny
	$(BIN)/medgate bench --dataset medqa --limit 1000 --data-dir ../shared/datasets/raw --out reports/bench.json

clean:
	rm -rf $(VENV) reports/*.json reports/*.md reports/*.html
