"""Live estimates from the transfers and replies a client sees anyway.

* ``BandwidthEstimator``: the device link's rate from recent transfers (and idle probes).
  Each transfer gives a sample (bits, seconds). Samples more than ``outlier``× away from the
  median rate of the window are dropped, and the rest give a harmonic mean weighted by bits
  (total bits over total seconds, which is what a stream of such transfers would see). The
  two directions are treated differently, because the costs of being wrong are: a transfer
  time is ``bits / rate``, convex in the rate, so trusting a rate that has collapsed costs far
  more (a request sent into a link that stalls) than missing a rise for a few requests (a
  plan a little slower than the best). So a rise, or one fast odd sample, must win the median
  first: with the default window of 5 a step up is followed on its third sample. A sample
  more than ``outlier``× *below* the median is acted on at once (the estimate drops to it);
  if the next sample is back in the band the estimate returns, and if the drop lasts the
  median follows it. A transfer still under way tells something too (``overdue``): once it has
  taken longer than its bits at ``outlier``× below the estimate would, the rate is at most
  bits / elapsed, and the estimate drops to that bound (not a sample: the transfer's own
  sample comes when it ends).
* ``RateRange``: the lowest and highest rates the link showed within the last ``window_s``
  seconds: how bad and how good it has recently been, which the hedged policy weighs against
  each plan's break-even rate.
* ``LatencyEstimator``: one-way latency as half the smallest recent round trip left after the
  transfer itself.
* ``LoadEstimator``: a server's load factor, its service time relative to what its profile
  predicts (an EWMA), and the last queue depth it reported.

``samples(measurement)`` turns the runtime's ``Measurement`` into these samples; the simulator
makes ``Observation``s directly.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import TiercutError

PROBE_BITS = 64 * 1024 * 8  # an idle link is probed with this many bits (simulated and real)


class EstimatorError(TiercutError, ValueError):
    """Bad settings or samples for an estimator."""


class Observation:
    """What one finished request (or probe) tells the controller. ``bits``/``seconds``: what
    crossed the device's link and the time it took (0 bits: nothing crossed); ``load``: load
    factor of the watched tier, when known; ``queue``: the device's own backlog in seconds;
    ``done`` False: a transfer still under way, ``seconds`` so far (a bound, see ``overdue``)."""

    __slots__ = ("now", "bits", "seconds", "load", "queue", "done")

    def __init__(self, now: float, bits: float = 0.0, seconds: float = 0.0,
                 load: float | None = None, queue: float = 0.0, done: bool = True):
        self.now, self.bits, self.seconds, self.load, self.queue = now, bits, seconds, load, queue
        self.done = done


class BandwidthEstimator:
    def __init__(self, initial_bps: float | None = None, window: int = 5, outlier: float = 2.0,
                 min_bits: float = 8 * 1500):
        if window < 1 or not outlier > 1:
            raise EstimatorError(f"window must be >= 1 and outlier > 1, got {window}, {outlier}")
        self.samples: deque[tuple[float, float]] = deque(maxlen=window)  # (bits, seconds)
        self.outlier, self.min_bits = outlier, min_bits
        self.estimate_bps = initial_bps
        self.last_t = -math.inf

    def add(self, bits: float, seconds: float, now: float = 0.0) -> float | None:
        """Add one transfer; returns the new estimate (bit/s). Transfers under ``min_bits`` or
        with no duration say more about latency than rate and are ignored."""
        if bits < self.min_bits or not seconds > 0 or not math.isfinite(seconds):
            return self.estimate_bps
        self.samples.append((bits, seconds))
        self.last_t = now
        rates = sorted([b / s for b, s in self.samples])
        n = len(rates)
        median = rates[n // 2] if n % 2 else math.sqrt(rates[n // 2 - 1] * rates[n // 2])
        low, high = median / self.outlier, median * self.outlier
        keep = [(b, s) for b, s in self.samples if low <= b / s <= high]
        if not keep:  # two samples far apart: no majority yet, trust the newer
            keep = [self.samples[-1]]
        estimate = sum([b for b, _ in keep]) / sum([s for _, s in keep])
        newest = bits / seconds
        if newest < low:  # a large drop: act on it now (see above)
            estimate = min(estimate, newest)
        self.estimate_bps = estimate
        return self.estimate_bps

    def overdue(self, bits: float, elapsed_s: float) -> float | None:
        """A transfer of ``bits`` under way for ``elapsed_s``: its rate is below bits/elapsed.
        Far below the estimate (``outlier``×), the estimate drops to that bound now."""
        if bits >= self.min_bits and elapsed_s > 0 and self.estimate_bps is not None:
            bound = bits / elapsed_s
            if bound < self.estimate_bps / self.outlier:
                self.estimate_bps = bound
        return self.estimate_bps

    def observe(self, obs: Observation) -> float | None:
        """A finished transfer is a sample; one under way, a bound (``overdue``)."""
        if obs.bits <= 0:
            return self.estimate_bps
        if obs.done:
            return self.add(obs.bits, obs.seconds, obs.now)
        return self.overdue(obs.bits, obs.seconds)

    def stale(self, now: float, after_s: float = 2.0) -> bool:
        """True when no transfer was seen for ``after_s``: time for a small probe."""
        return now - self.last_t > after_s


class RateRange:
    """The lowest and the highest rate seen within the last ``window_s`` seconds: sliding-window
    minimum and maximum (rates kept in order, each sample pushed and popped once), O(1) per
    sample. The lowest counts the bounds of transfers under way (the link was at most that
    fast); the highest only finished transfers and probes (a bound is not a rate reached)."""

    def __init__(self, window_s: float, min_bits: float = 8 * 1500):
        if not window_s > 0:
            raise EstimatorError(f"window_s must be > 0 seconds, got {window_s!r}")
        self.window_s, self.min_bits = window_s, min_bits
        self._low: deque[tuple[float, float]] = deque()  # (time, rate), rates ascending
        self._high: deque[tuple[float, float]] = deque()  # (time, rate), rates descending

    def observe(self, obs: Observation) -> None:
        if obs.bits < self.min_bits or not obs.seconds > 0:
            return
        rate = obs.bits / obs.seconds
        low = self._low
        while low and low[-1][1] >= rate:  # never the minimum again while this one is kept
            low.pop()
        low.append((obs.now, rate))
        if obs.done:
            high = self._high
            while high and high[-1][1] <= rate:
                high.pop()
            high.append((obs.now, rate))

    def lowest(self, now: float) -> float:
        """The lowest rate seen since ``now - window_s`` (inf when none)."""
        return _front(self._low, now - self.window_s, math.inf)

    def highest(self, now: float) -> float:
        """The highest rate a transfer reached since ``now - window_s`` (0 when none)."""
        return _front(self._high, now - self.window_s, 0.0)


def _front(kept: deque, since: float, empty: float) -> float:
    while kept and kept[0][0] < since:
        kept.popleft()
    return kept[0][1] if kept else empty


class LatencyEstimator:
    def __init__(self, initial_s: float = 0.0, window: int = 20):
        self.samples: deque[float] = deque(maxlen=window)
        self.estimate_s = initial_s

    def add(self, round_trip_s: float, transfer_s: float = 0.0) -> float:
        rest = round_trip_s - transfer_s
        if math.isfinite(rest) and rest >= 0:
            self.samples.append(rest / 2)
            self.estimate_s = min(self.samples)
        return self.estimate_s


class LoadEstimator:
    def __init__(self, alpha: float = 0.5, initial: float = 1.0):
        if not 0 < alpha <= 1:
            raise EstimatorError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha, self.factor, self.queue_depth = alpha, initial, 0

    def add(self, factor: float, queue_depth: int = 0) -> float:
        if math.isfinite(factor) and factor > 0:
            self.factor += self.alpha * (factor - self.factor)
        self.queue_depth = queue_depth
        return self.factor


@dataclass(frozen=True)
class Samples:
    """A runtime Measurement in estimator terms."""

    bits: float  # bits across the device's hop, both ways
    seconds: float  # their transfer time (hop time minus the latency both ways)
    round_trip_s: float  # the device hop's measured time
    loads: Mapping[str, tuple[float, int]]  # tier -> (service / predicted compute, queue depth)


def samples(measurement: Any, predicted_compute_s: Mapping[str, float],
            latency_s: float = 0.0) -> Samples | None:
    """From ``tiercut.runtime.client.Measurement``: the device hop's bits and transfer time
    (its measured seconds minus ``latency_s`` each way) and each server's compute time
    relative to ``predicted_compute_s`` (the plan's tier_seconds at load 1)."""
    if getattr(measurement, "fallback", False) or not measurement.hops:
        return None
    hop = measurement.hops[0]
    bits = 8.0 * (hop.bytes_sent + hop.bytes_returned)
    loads = {}
    for t in measurement.servers:
        expected = predicted_compute_s.get(t.tier, 0.0)
        if expected > 0:
            loads[t.tier] = (t.compute_s / expected, t.load.queue_depth if t.load else 0)
    return Samples(bits, max(hop.seconds - 2 * latency_s, 1e-9), hop.seconds, loads)
