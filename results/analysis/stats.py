"""Small-sample statistics: Student t quantiles, confidence intervals, Welch's t-test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from results.errors import ResultsError

# the continued fraction converges in a few dozen steps for the arguments t tests produce
_MAX_STEPS = 1000
_EPSILON = 1e-15
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_STEPS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPSILON:
            return h
    raise ArithmeticError(f"incomplete beta ({a}, {b}, {x}) did not converge")


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete_beta needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # the fraction converges fast only below the mean of the distribution; use symmetry above it
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """The two-sided tail P(|T| >= |t|) of Student's t with df degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    # computed directly, not as 1 - cdf, so tiny p-values keep their precision
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df (real, > 0) degrees of freedom."""
    tail = t_sf2(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p: t_quantile(0.975, 4) = 2.776..."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    # bisection: the cdf is monotone and cheap, and 100 halvings reach double precision
    for _ in range(100):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Summary:
    """One sample: its size, mean, sample standard deviation and confidence interval of the mean.

    With a single value there is no spread: std and the interval are None.
    """

    values: tuple[float, ...]
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not self.values:
            raise ResultsError("a sample needs at least one value: no run reported this metric")
        if not 0.0 < self.confidence < 1.0:
            raise ResultsError(
                f"confidence {self.confidence} is not between 0 and 1: use e.g. 0.95"
            )

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def half_width(self) -> float | None:
        """Half the width of the Student t confidence interval of the mean."""
        std = self.std
        if std is None:
            return None
        return t_quantile(0.5 + self.confidence / 2.0, self.n - 1) * std / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        half = self.half_width
        return None if half is None else (self.mean - half, self.mean + half)


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t-test of mean(b) - mean(a): the statistic, its df and p-value."""

    t: float
    df: float
    p_value: float


def welch_test(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's two-sided t-test; each sample needs two values or more."""
    if len(a) < 2 or len(b) < 2:
        raise ResultsError(
            "Welch's t-test needs at least 2 values per sample: repeat the runs to test them"
        )
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    var_a = statistics.variance(a) / len(a)
    var_b = statistics.variance(b) / len(b)
    spread = var_a + var_b
    if spread == 0.0:
        # both samples are constant: any difference is certain, no difference is no evidence
        same = mean_a == mean_b
        return Welch(
            0.0 if same else math.copysign(math.inf, mean_b - mean_a),
            float(len(a) + len(b) - 2),
            1.0 if same else 0.0,
        )
    df = spread**2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    t = (mean_b - mean_a) / math.sqrt(spread)
    return Welch(t, df, t_sf2(t, df))
