"""Release gates, evaluated on the merged results of the whole run.

Each function is parametrized with one case per metric cell that has a threshold in
fixtures/thresholds/<model>.toml (or default.toml, or --threshold NAME=VALUE). Without xdist they
run after every case; with -n N the controller evaluates them after the last worker finishes.
"""

import pytest


@pytest.mark.gate("accuracy")
def test_accuracy_gate(gate):
    gate.check()


@pytest.mark.gate("lenient_accuracy")
def test_lenient_accuracy_gate(gate):
    gate.check()


@pytest.mark.gate("compliance")
def test_compliance_gate(gate):
    gate.check()


@pytest.mark.gate("stability")
def test_stability_gate(gate):
    gate.check()


@pytest.mark.gate("flip_rate")
def test_flip_rate_gate(gate):
    gate.check()


@pytest.mark.gate("worst_case_accuracy")
def test_worst_case_accuracy_gate(gate):
    gate.check()


@pytest.mark.gate("prompt_agreement")
def test_prompt_agreement_gate(gate):
    gate.check()


@pytest.mark.gate("crosslingual_agreement")
def test_crosslingual_agreement_gate(gate):
    gate.check()


@pytest.mark.gate("regression")
def test_regression_gate(gate):
    """With --compare and --fail-on-regression METRIC:MARGINpp: fails on a significant drop beyond the margin."""
    gate.check()
