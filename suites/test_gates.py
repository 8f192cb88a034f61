"""Release gates, evaluated on the merged results of the whole run.

One test per metric of the catalogue (medgate.metrics.catalogue), `test_<metric>_gate`, each
parametrized with one case per metric cell that has a threshold in fixtures/thresholds/<model>.toml
(or default.toml, or --threshold NAME=VALUE); a metric without a threshold is deselected. Without
xdist they run after every case; with -n N the controller evaluates them after the last worker finishes.
"""

import pytest

from medgate.metrics.catalogue import CATALOGUE


def _gate_test(metric):
    @pytest.mark.gate(metric)
    def test(gate):
        gate.check()

    test.__name__ = test.__qualname__ = f"test_{metric}_gate"
    test.__doc__ = f"{metric}: {CATALOGUE[metric].definition}"
    return test


for _metric in CATALOGUE:
    globals()[f"test_{_metric}_gate"] = _gate_test(_metric)


@pytest.mark.gate("regression")
def test_regression_gate(gate):
    """With --compare and --fail-on-regression METRIC:MARGINpp: fails on a significant drop beyond the margin."""
    gate.check()
