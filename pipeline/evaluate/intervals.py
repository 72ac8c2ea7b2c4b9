"""Bootstrap confidence intervals for scores that are means over images.

A mean over a few dozen images moves with the images drawn: the percentile bootstrap
(Efron & Tibshirani 1993, ch. 13) resamples the images with replacement and takes the
2.5th and 97.5th percentiles of the resampled means as the 95% interval. Verdicts that
compare a method with a threshold or with the random baseline read these intervals,
not the means, so a verdict does not flip with the draw of images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """The mean of `n` finite per-image values and its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self, key: str) -> dict[str, float | int]:
        """Flat metrics: key, key_low, key_high, key_n (flat keys read well in
        `dvc metrics show` and MLflow)."""
        return {
            key: self.mean,
            f"{key}_low": self.low,
            f"{key}_high": self.high,
            f"{key}_n": self.n,
        }

    def text(self, digits: int = 3) -> str:
        """'0.123 [0.100, 0.140]' for tables."""
        if self.n == 0:
            return "—"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def finite_mean(values: np.ndarray) -> float:
    """The mean over the values not left out (non-finite); NaN when all are."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def bootstrap_interval(
    values: np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> Interval:
    """Percentile-bootstrap interval of the mean of `values` (one per image). Non-finite
    values (images left out, such as constant maps) are dropped first; with none left
    the interval is NaN with n = 0, with one left it has zero width."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    n = len(finite)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = finite[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(finite.mean()), float(low), float(high), n)


def separated(better: Interval, worse: Interval, direction: str) -> bool:
    """Whether `better` lies entirely on the good side of `worse` (the intervals do not
    overlap): 'lower' is better, or 'higher' is better."""
    if better.n == 0 or worse.n == 0:
        return False
    if direction == "lower":
        return better.high < worse.low
    if direction == "higher":
        return better.low > worse.high
    raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
