"""A rate estimate that knows how much it knows: ``RateBelief``.

``BandwidthEstimator`` gives one number; a plan chosen from one number cannot tell a link
measured a moment ago from one measured once, ten seconds ago, or one that flaps. The belief
here is a distribution of the device link's rate *now*, in log-rate (rates are positive and
their changes multiplicative):

* each recent sample (finished transfer or probe) is a component centred on its log-rate,
  with variance ``noise_var + D · age``, its age counted from the middle of the transfer:
  what the link did then says less about now the longer ago it was (a random walk of log-rate with diffusion ``D`` per second);
* ``D`` is learnt from the link itself: pooled squared log-rate changes between consecutive
  samples over their time gaps (fading over ``window_s``), starting from ``prior_drift`` per
  second worth ``prior_seconds`` of evidence, which fades as observed changes do: a steady link
  soon earns a narrow belief and keeps it (no floor left by the prior), a flapping one keeps a
  wide one;
* components are weighted by the inverse of their variance (newer samples count more; on a
  link whose samples are far apart in time all count almost alike, which for a flapping link
  is its marginal: the share of the time it was bad);
* a transfer still under way bounds the rate (bits over the time so far): until a sample
  later than it arrives, the belief's rates above the bound are taken down to it (the link is
  no faster than that now, whatever the samples before said);
* with no sample within ``window_s`` (cold start, or history gone stale) the belief is the
  prior: ``initial_bps`` with variance ``prior_var``, widened by ``D`` per second since the
  last sample.

``points(now)`` turns the mixture into weighted rates (three Gauss-Hermite nodes a
component, exact for polynomials of log-rate to the fifth degree), over which a policy takes
the expected cost of a plan or a quantile of it (``expected`` and ``quantile``).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Sequence

from .estimators import EstimatorError, Observation

PRIOR_SPREAD = 10.0  # an unmeasured link's rate known within this factor, 9 times out of 10
PRIOR_DRIFT = 1.0  # log-rate variance per second a link is presumed to gain before it is seen
PRIOR_SECONDS = 5.0  # ... worth this many seconds of observed changes
NOISE_VAR = 0.01  # a sample's own error (log-rate variance: about 10%)
BELIEF_WINDOW_S = 30.0  # samples older than this are forgotten
MAX_SAMPLES = 32
MAX_VAR = 16.0  # no component is wider than this (log-rate variance: a factor of e^4 a sigma)
_Z90 = 1.6448536269514722  # the standard normal's 0.95 quantile
_NODES = ((-math.sqrt(3.0), 1 / 6), (0.0, 2 / 3), (math.sqrt(3.0), 1 / 6))


class RateBelief:
    def __init__(self, initial_bps: float | None = None, window_s: float = BELIEF_WINDOW_S,
                 prior_spread: float = PRIOR_SPREAD, prior_drift: float = PRIOR_DRIFT,
                 prior_seconds: float = PRIOR_SECONDS, noise_var: float = NOISE_VAR,
                 max_samples: int = MAX_SAMPLES, min_bits: float = 8 * 1500):
        for name, v in (("window_s", window_s), ("prior_drift", prior_drift),
                        ("prior_seconds", prior_seconds), ("noise_var", noise_var)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise EstimatorError(f"{name} must be a finite number > 0, got {v!r}")
        if isinstance(prior_spread, bool) or not (isinstance(prior_spread, (int, float))
                                                  and 1 < prior_spread < math.inf):
            raise EstimatorError(f"prior_spread must be a finite factor > 1, got {prior_spread!r}")
        if initial_bps is not None and not (math.isfinite(initial_bps) and initial_bps > 0):
            raise EstimatorError(f"initial_bps must be > 0 bit/s or None, got {initial_bps!r}")
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
            raise EstimatorError(f"max_samples must be a whole number >= 2, got {max_samples!r}")
        self.window_s, self.noise_var, self.min_bits = float(window_s), noise_var, min_bits
        self.prior_log = math.log(initial_bps) if initial_bps else math.log(1e6)
        self.prior_var = (math.log(prior_spread) / _Z90) ** 2
        # pooled squared changes and their seconds, fading; they start as the prior's evidence,
        # which fades as observed changes do (a steady link's belief narrows for good)
        self._sq, self._dt = prior_drift * prior_seconds, float(prior_seconds)
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (t, log rate)
        self._bound: tuple[float, float] | None = None  # (t, log rate) of a transfer under way
        self.last_t = -math.inf  # the newest sample (idle probes are due from it)

    @property
    def drift(self) -> float:
        """Learnt log-rate variance per second (``D``)."""
        return self._sq / self._dt

    def add(self, bits: float, seconds: float, now: float) -> None:
        """One finished transfer of ``bits`` in ``seconds``, observed at ``now``."""
        if bits < self.min_bits or not seconds > 0 or not math.isfinite(seconds):
            return
        x = math.log(bits / seconds)
        now -= seconds / 2  # a transfer's mean rate tells of its middle (a long one's most)
        if self.samples:
            t0, x0 = self.samples[-1]
            if now >= t0 and now - t0 <= self.window_s:
                gap = max(now - t0, seconds)
                fade = math.exp(-gap / self.window_s)  # changes older than the window fade
                self._sq = self._sq * fade + (x - x0) ** 2
                self._dt = self._dt * fade + gap
        self.samples.append((now, x))
        self.last_t = max(self.last_t, now + seconds / 2)
        if self._bound is not None and self._bound[0] <= now + seconds / 2:
            self._bound = None

    def bound(self, bits: float, elapsed_s: float, now: float) -> None:
        """A transfer of ``bits`` under way for ``elapsed_s``: the rate is at most their ratio."""
        if bits >= self.min_bits and elapsed_s > 0:
            self._bound = (now, math.log(bits / elapsed_s))

    def observe(self, obs: Observation) -> None:
        if obs.bits <= 0:
            return
        if obs.done:
            self.add(obs.bits, obs.seconds, obs.now)
        else:
            self.bound(obs.bits, obs.seconds, obs.now)

    def components(self, now: float) -> list[tuple[float, float, float]]:
        """(weight, mean, variance) of log-rate now; weights sum to 1."""
        d = self.drift
        since = now - self.window_s
        comps = [(x, min(self.noise_var + d * max(now - t, 0.0), MAX_VAR))
                 for t, x in self.samples if t >= since]
        if not comps:
            age = now - self.last_t if math.isfinite(self.last_t) else 0.0
            return [(1.0, self.prior_log, min(self.prior_var + d * max(age, 0.0), MAX_VAR))]
        inv = [1.0 / v for _, v in comps]
        total = math.fsum(inv)
        return [(w / total, m, v) for w, (m, v) in zip(inv, comps)]

    def points(self, now: float) -> list[tuple[float, float]]:
        """(rate bit/s, weight) over which expectations are taken; weights sum to 1."""
        out = []
        for w, m, v in self.components(now):
            s = math.sqrt(v)
            out += [(math.exp(m + z * s), w * wz) for z, wz in _NODES]
        b = self._bound
        if b is not None and b[0] >= now - self.window_s:
            cap = math.exp(b[1])  # the link is no faster than the transfer under way
            out = [(min(r, cap), w) for r, w in out]
        return out

    def median_bps(self, now: float) -> float:
        return self.quantile_bps(now, 0.5)

    def quantile_bps(self, now: float, q: float) -> float:
        """The rate the link is below with probability ``q`` (over ``points``)."""
        check_quantile(q)
        return weighted_quantile(self.points(now), q)

    def spread(self, now: float) -> float:
        """Standard deviation of log-rate now (over ``points``): 0 a sure rate; the cold prior
        about 1.4."""
        pts = [(math.log(r), w) for r, w in self.points(now)]
        mean = math.fsum(w * x for x, w in pts)
        return math.sqrt(max(math.fsum(w * (x - mean) ** 2 for x, w in pts), 0.0))


def check_quantile(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise EstimatorError(f"quantile {q!r} must be a number strictly between 0 and 1")
    return float(q)


def weighted_quantile(values: Sequence[tuple[float, float]], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total."""
    ordered = sorted(values)
    total = math.fsum(w for _, w in ordered)
    acc = 0.0
    for v, w in ordered:
        acc += w
        if acc >= q * total - 1e-12:
            return v
    return ordered[-1][0]


def expected(points: Sequence[tuple[float, float]], f: Callable[[float], float]) -> float:
    """E[f(rate)] over ``points``."""
    return math.fsum(w * f(r) for r, w in points)


def quantile(points: Sequence[tuple[float, float]], f: Callable[[float], float],
             q: float) -> float:
    """The ``q`` quantile of f(rate) over ``points``."""
    return weighted_quantile([(f(r), w) for r, w in points], check_quantile(q))
