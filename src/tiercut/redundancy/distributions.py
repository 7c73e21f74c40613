"""Service-time distributions for the redundancy simulator, their fits to measured samples, and
a test of whether a sample's survival function is log-concave or log-convex."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class ShiftedExponential:
    """shift + Exp(rate): log-concave when the shift dominates 1/rate (redundancy only adds
    load), close to memoryless when 1/rate dominates (redundancy helps at low load)."""

    shift: float
    rate: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shift) and self.shift >= 0):
            raise ValueError(f"shift must be finite and >= 0, got {self.shift!r}")
        _positive("rate", self.rate)

    @property
    def mean(self) -> float:
        return self.shift + 1.0 / self.rate

    @property
    def var(self) -> float:
        return 1.0 / self.rate ** 2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.shift + rng.exponential(1.0 / self.rate, size)


@dataclass(frozen=True)
class HyperExponential:
    """Exp(rate1) with probability p, else Exp(rate2): log-convex (decreasing hazard)."""

    p: float
    rate1: float
    rate2: float

    def __post_init__(self) -> None:
        if not (0 < self.p < 1):
            raise ValueError(f"p must be in (0, 1), got {self.p!r}")
        _positive("rate1", self.rate1)
        _positive("rate2", self.rate2)

    @property
    def mean(self) -> float:
        return self.p / self.rate1 + (1 - self.p) / self.rate2

    @property
    def var(self) -> float:
        m2 = 2 * self.p / self.rate1 ** 2 + 2 * (1 - self.p) / self.rate2 ** 2
        return m2 - self.mean ** 2

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        fast = rng.random(size) < self.p
        return rng.exponential(1.0, size) / np.where(fast, self.rate1, self.rate2)


@dataclass(frozen=True)
class Empirical:
    """Resampling (with replacement) of measured service times."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.samples) < 2 or min(self.samples) < 0:
            raise ValueError("Empirical needs at least 2 samples, all >= 0, got "
                             f"{len(self.samples)} samples")

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    @property
    def var(self) -> float:
        return float(np.var(self.samples))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(np.asarray(self.samples, dtype=float), size)


def _checked(samples) -> np.ndarray:
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or len(x) < 2 or not np.all(np.isfinite(x)) or x.min() < 0:
        raise ValueError("need a 1-D sample of at least 2 finite times >= 0, got "
                         f"shape {x.shape}")
    return x


def fit_shifted_exponential(samples, method: str = "mle") -> ShiftedExponential:
    """``mle``: shift = min, 1/rate = mean - min (both bias-corrected by n/(n-1));
    ``moments``: 1/rate = std, shift = mean - std (clamped at 0)."""
    x = _checked(samples)
    n = len(x)
    if method == "mle":
        scale = (x.mean() - x.min()) * n / (n - 1)
        shift = max(0.0, x.min() - scale / n)
    elif method == "moments":
        scale = float(x.std(ddof=1))
        shift = max(0.0, float(x.mean()) - scale)
    else:
        raise ValueError(f"method must be 'mle' or 'moments', got {method!r}")
    if scale <= 0:
        raise ValueError("all samples are equal: no random part to fit")
    return ShiftedExponential(float(shift), float(1.0 / scale))


def fit_hyperexponential(samples=None, *, mean: float | None = None,
                         scv: float | None = None) -> HyperExponential:
    """Two-phase balanced-means fit to the first two moments (of ``samples``, or the ``mean``
    and squared coefficient of variation ``scv`` given); needs scv > 1."""
    if samples is not None:
        x = _checked(samples)
        mean, scv = float(x.mean()), float(x.var(ddof=1) / x.mean() ** 2)
    if mean is None or scv is None:
        raise ValueError("give samples, or both mean= and scv=")
    _positive("mean", mean)
    if not scv > 1:
        raise ValueError(f"a hyperexponential needs scv > 1 (variance above mean^2), got "
                         f"scv={scv:.3g}: fit a shifted exponential instead")
    p = 0.5 * (1 + math.sqrt((scv - 1) / (scv + 1)))
    return HyperExponential(p, 2 * p / mean, 2 * (1 - p) / mean)


def log_concavity(samples, lo: float = 0.05, hi: float = 0.95, points: int = 20) -> float:
    """The trend of the hazard rate of ``samples`` between quantiles ``lo`` and ``hi``,
    relative to its level: > 0 when it rises (survival log-concave: redundancy adds load),
    < 0 when it falls (log-convex: redundancy helps), near 0 for an exponential tail. It is
    the least-squares slope of the log hazard (h_i = -d log S / dt per quantile step, the
    first step from t = 0 so that a shift counts) over the steps, times their number."""
    x = np.sort(_checked(samples))
    qs = np.concatenate([[0.0], np.linspace(lo, hi, points)])
    ts = np.concatenate([[0.0], np.quantile(x, qs[1:])])  # from t = 0: a shift counts
    dt = np.diff(ts)
    if np.any(dt <= 0):
        dt = np.maximum(dt, 1e-12)
    hazard = -np.diff(np.log1p(-qs)) / dt
    idx = np.arange(len(hazard), dtype=float)
    slope = np.polyfit(idx, np.log(hazard), 1)[0]
    return float(slope * len(hazard))  # change of log hazard across the range
