"""Small statistics shared by metrics, gates and diffs (no scipy needed at run time)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2.

    `worse` counts pairs right in the baseline and wrong now, `better` the reverse. The p-value is
    min(1, 2 * P(X <= min(worse, better))) for X ~ Binomial(worse + better, 1/2), which equals
    scipy.stats.binomtest(min, n, 0.5).pvalue because the null distribution is symmetric.
    """
    if worse < 0 or better < 0:
        raise ValueError(f"discordant counts must be >= 0, got {worse} and {better}")
    n = worse + better
    k = min(worse, better)
    if 2 * k + 1 >= n:  # the lower tail reaches the middle: half the mass or more, doubled
        return 1.0
    # Sum the lower tail from k downwards in log space: the terms shrink geometrically below the
    # mean, so this is exact to double precision and fast even for tens of thousands of pairs.
    log_term = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)
    term, total, i = math.exp(log_term), 0.0, k
    while i >= 0 and term > 0.0:
        total += term
        if term < total * 1e-17:
            break
        term *= i / (n - i + 1)  # P(X = i - 1) / P(X = i)
        i -= 1
    return min(1.0, 2.0 * total)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given); controls the family-wise error
    rate under any dependence between the tests, which the overlapping cells of a report have."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def paired_bootstrap_interval(categories: Mapping[tuple[int, int, int, int], int], replicates: int, seed: int,
                              level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of `current - baseline` for a ratio metric, resampling paired units.

    Each unit is summarised by (baseline numerator, baseline denominator, current numerator,
    current denominator), all 0 or 1 (a plain proportion has denominator 1). Resampling n units
    with replacement only changes how often each of these <= 16 kinds of unit is drawn, which is
    a multinomial draw: the same bootstrap distribution as resampling unit indices, in O(replicates)
    instead of O(replicates x n) time and memory. None when there is nothing to resample.
    """
    kinds = [(kind, count) for kind, count in sorted(categories.items()) if count > 0]
    n = sum(count for _, count in kinds)
    if n == 0:
        return None
    import numpy as np  # here, not at the top: a run served from the prediction cache never needs numpy

    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [count / n for _, count in kinds], size=replicates)  # (replicates, kinds)
    weights = np.array([kind for kind, _ in kinds], dtype=np.float64)  # (kinds, 4)
    sums = draws @ weights  # (replicates, 4): baseline num, den, current num, den
    with np.errstate(divide="ignore", invalid="ignore"):
        deltas = sums[:, 2] / sums[:, 3] - sums[:, 0] / sums[:, 1]
    deltas = deltas[np.isfinite(deltas)]  # a replicate without any eligible unit has no ratio
    if deltas.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(deltas, [tail, 100.0 - tail])
    return float(low), float(high)


def chi_square_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-square with `dof` degrees of freedom (scipy.stats.chi2.sf).

    The regularized upper incomplete gamma function Q(dof/2, statistic/2): its series below
    a + 1, its continued fraction (modified Lentz) above, as in Numerical Recipes (6.2).
    """
    if dof < 1:
        raise ValueError(f"a chi-square distribution needs at least 1 degree of freedom, got {dof}")
    if statistic <= 0.0:
        return 1.0
    a, x = dof / 2.0, statistic / 2.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        while abs(term) > abs(total) * 1e-16:
            denominator += 1.0
            term *= x / denominator
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    fraction = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < 1e-16:
            break
    return min(1.0, fraction * math.exp(log_prefix))
