"""The paired statistics behind comparisons, checked against reference values (scipy is a dev
dependency: used here as the reference, never at run time)."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from medgate.stats import holm_adjust, mcnemar_exact, paired_bootstrap_interval


def test_mcnemar_exact_matches_a_hand_computed_binomial_tail():
    # 2 discordant pairs one way, 10 the other: 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(2, 10) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(10, 2) == mcnemar_exact(2, 10)
    assert mcnemar_exact(0, 12) == pytest.approx(2 / 4096, rel=1e-12)


@pytest.mark.parametrize("worse, better", [(0, 0), (3, 3), (7, 6), (6, 7)])
def test_mcnemar_exact_is_one_without_evidence(worse, better):
    assert mcnemar_exact(worse, better) == 1.0


@pytest.mark.parametrize("worse, better", [(1, 5), (0, 6), (4, 15), (30, 12), (120, 80), (480, 520), (24000, 25000),
                                           (0, 200), (1, 1000)])
def test_mcnemar_exact_matches_scipy_binomtest(worse, better):
    expected = binomtest(min(worse, better), worse + better, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(worse, better) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_exact_rejects_negative_counts():
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 3)


def test_holm_adjustment_matches_a_worked_example():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []


def test_holm_adjusted_values_are_bounded_and_keep_the_order():
    rng = np.random.default_rng(3)
    p_values = list(rng.uniform(0, 0.2, size=30))
    adjusted = holm_adjust(p_values)
    assert all(p <= a <= 1.0 for p, a in zip(p_values, adjusted))
    order = np.argsort(p_values)
    assert all(adjusted[i] <= adjusted[j] for i, j in zip(order, order[1:]))


def _naive_bootstrap(a: np.ndarray, b: np.ndarray, replicates: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(a), size=(replicates, len(a)))
    deltas = b[index].mean(axis=1) - a[index].mean(axis=1)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def test_multinomial_bootstrap_matches_resampling_item_indices():
    rng = np.random.default_rng(11)
    a = rng.random(300) < 0.7
    b = np.where(rng.random(300) < 0.8, a, rng.random(300) < 0.6)
    kinds: dict[tuple[int, int, int, int], int] = {}
    for x, y in zip(a, b):
        key = (int(x), 1, int(y), 1)
        kinds[key] = kinds.get(key, 0) + 1
    fast = paired_bootstrap_interval(kinds, replicates=20000, seed=1)
    slow = _naive_bootstrap(a.astype(float), b.astype(float), replicates=20000, seed=2)
    assert fast == pytest.approx(slow, abs=0.004)  # Monte Carlo error of a 2.5% quantile at n=300


def test_bootstrap_interval_matches_the_normal_approximation_for_many_pairs():
    # 1000 pairs, 60 right -> wrong and 30 wrong -> right: delta -0.03 and the paired standard error
    # sqrt((p01 + p10 - (p01 - p10)^2) / n)
    n, worse, better = 1000, 60, 30
    kinds = {(1, 1, 0, 1): worse, (0, 1, 1, 1): better, (1, 1, 1, 1): 700, (0, 1, 0, 1): n - 790}
    se = math.sqrt(((worse + better) / n - ((better - worse) / n) ** 2) / n)
    low, high = paired_bootstrap_interval(kinds, replicates=40000, seed=0)
    assert low == pytest.approx(-0.03 - 1.959964 * se, abs=0.002)
    assert high == pytest.approx(-0.03 + 1.959964 * se, abs=0.002)


def test_bootstrap_is_seeded_and_handles_degenerate_cells():
    kinds = {(1, 1, 0, 1): 5, (1, 1, 1, 1): 40}
    assert paired_bootstrap_interval(kinds, 500, seed=4) == paired_bootstrap_interval(kinds, 500, seed=4)
    assert paired_bootstrap_interval({(1, 1, 1, 1): 30}, 500, seed=0) == (0.0, 0.0)
    assert paired_bootstrap_interval({}, 500, seed=0) is None


def test_bootstrap_of_a_ratio_metric_skips_replicates_without_eligible_units():
    # flip_rate-like: the denominator counts only items right on the original; with a single
    # eligible unit per side many replicates draw none, and those replicates carry no ratio.
    kinds = {(1, 1, 0, 1): 1, (0, 0, 0, 0): 20}
    low, high = paired_bootstrap_interval(kinds, 2000, seed=0)
    assert (low, high) == (-1.0, -1.0)
    assert paired_bootstrap_interval({(0, 0, 0, 0): 5}, 100, seed=0) is None
