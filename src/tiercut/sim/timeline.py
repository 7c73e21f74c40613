"""A bandwidth trace prepared for fast questions: when does a transfer of B bits that starts at
t end, and how many bits can the link carry between t0 and t1.

The trace is piecewise constant and loops (see ``tiercut.link.traces``); the cumulative bits at
every sample start are precomputed, so each question is one or two bisections.
"""
from __future__ import annotations

import bisect
import math

from ..link.traces import BandwidthTrace, BandwidthTraceError


class Timeline:
    __slots__ = ("trace", "starts", "rates", "cum", "period", "per_loop", "constant")

    def __init__(self, trace: BandwidthTrace):
        self.trace = trace
        self.starts = list(trace.times_s)
        self.rates = list(trace.rates_bps)
        self.period = trace.duration_s
        ends = self.starts[1:] + [self.period]
        cum = [0.0]
        for s, e, r in zip(self.starts, ends, self.rates):
            cum.append(cum[-1] + r * (e - s))
        self.cum = cum  # bits delivered from 0 to starts[i]; cum[-1]: one loop
        self.per_loop = cum[-1]
        if not self.per_loop > 0:
            raise BandwidthTraceError(f"trace {trace.name!r} carries no bits (every rate is 0)")
        positive = {r for r in self.rates}
        self.constant = self.rates[0] if len(positive) == 1 else None

    def rate_at(self, t: float) -> float:
        tau = t % self.period
        return self.rates[bisect.bisect_right(self.starts, tau) - 1]

    def bits_until(self, t: float) -> float:
        """Bits the link can carry from time 0 to ``t``."""
        loops, tau = divmod(t, self.period)
        j = bisect.bisect_right(self.starts, tau) - 1
        return loops * self.per_loop + self.cum[j] + self.rates[j] * (tau - self.starts[j])

    def finish(self, t: float, bits: float) -> float:
        """When a transfer of ``bits`` that starts at ``t`` ends (the rate integrated)."""
        if bits <= 0.0:
            return t
        if self.constant is not None:
            return t + bits / self.constant
        target = self.bits_until(t) + bits
        loops = math.floor(target / self.per_loop)
        rest = target - loops * self.per_loop
        if rest <= 0.0:
            loops -= 1
            rest += self.per_loop
        j = bisect.bisect_left(self.cum, rest) - 1  # cum[j] < rest <= cum[j + 1]
        return loops * self.period + self.starts[j] + (rest - self.cum[j]) / self.rates[j]

    def mean_between(self, t0: float, t1: float) -> float:
        if t1 <= t0:
            return self.rate_at(t0)
        return (self.bits_until(t1) - self.bits_until(t0)) / (t1 - t0)

    def constant_until(self, t: float) -> float:
        """The time (at or after ``t``) at which the rate next changes."""
        loops, tau = divmod(t, self.period)
        j = bisect.bisect_right(self.starts, tau)
        end = self.starts[j] if j < len(self.starts) else self.period
        return loops * self.period + end
