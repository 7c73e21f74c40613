"""``oracle``: knows the future trace: the plan with the least latency given the bandwidth each
transfer will actually see (queueing aside)."""
from __future__ import annotations

from typing import Callable, Sequence

from ...planner.plan import Plan
from ..costs import CPU, TRACE_LINK, PlanCost
from .base import Policy


class OraclePolicy(Policy):
    """Knows the device link's future: ``finish(t, bits)`` integrates the trace."""

    name = "oracle"

    def __init__(self, candidates: Sequence[Plan], timeline, costs: Callable[[Plan], PlanCost]):
        self.candidates = [costs(p) for p in candidates]
        self.timeline = timeline
        self._walks = [_walk(c) for c in self.candidates]
        # per trace rate (a trace has few): the best candidate, the slowest one's latency
        self._at_rate: dict[float, tuple[Plan, float]] = {}
        self._seg_end, self._rate, self._best, self._worst = -1.0, None, None, 0.0

    def exact(self, c: PlanCost, now: float) -> float:
        """Latency of ``c`` started at ``now`` with nothing queued, the trace integrated."""
        return self._walk_time(_walk(c), now)

    def _walk_time(self, walk: tuple[tuple[float, float], ...], now: float) -> float:
        finish = self.timeline.finish
        x = now
        for bits, seconds in walk:
            if bits > 0.0:
                x = finish(x, bits)
            x += seconds
        return x - now

    def _constant_rate(self, rate: float) -> tuple[Plan, float]:
        """The best candidate at a constant ``rate`` and the slowest candidate's latency."""
        if rate not in self._at_rate:
            costs = [(c.latency_at(rate), c) for c in self.candidates]
            self._at_rate[rate] = (min(costs, key=lambda x: x[0])[1].plan,
                                   max(lat for lat, _ in costs))
        return self._at_rate[rate]

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        rate = self.timeline.rate_at(now)
        if now + self._worst <= self._seg_end and rate == self._rate:
            return self._best
        if rate > 0:
            # every candidate ends before the rate changes: the constant-rate latencies are
            # exact (rounding is monotone, so testing the slowest tests them all)
            end = self.timeline.constant_until(now)
            best, worst = self._constant_rate(rate)
            if now + worst <= end:
                self._seg_end, self._rate, self._best, self._worst = end, rate, best, worst
                return best
        # the rate changes under some candidate: walk each through the trace; the first
        # fastest wins, as min() would pick it
        times = [self._walk_time(w, now) for w in self._walks]
        return self.candidates[times.index(min(times))].plan


def _walk(c: PlanCost) -> tuple[tuple[float, float], ...]:
    """A plan's steps with nothing queued, as (bits over the device's link at the trace's
    rate, then seconds to add); steps that would add nothing are left out (adding 0.0 or
    sending 0 bits leaves the time as it is, bit for bit)."""
    walk = []
    for kind, _, seconds, bits, held in c.steps:
        if kind == CPU:
            walk.append((0.0, seconds))
        elif kind == TRACE_LINK:
            walk.append((bits, seconds))
        else:
            walk.append((0.0, held + seconds))
    return tuple((b, s) for b, s in walk if b > 0.0 or s != 0.0)
