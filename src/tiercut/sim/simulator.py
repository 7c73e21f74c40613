"""A discrete-event simulator of one device's request stream over a split model.

Requests arrive (Poisson or periodic); each asks the policy for a plan and walks that plan's
steps (``costs.PlanCost``): every compute tier and every link is a first-come-first-served
server, so queues form wherever work arrives faster than it is served. The device's link
carries its bits at the trace's rate, integrated over the transfer; the watched tier's compute
is scaled by the load trace at the time it starts. Requests are taken in arrival order and each
resource serves them in that order (exact for a fixed plan; around a plan switch a request may
wait behind an earlier one that reaches a shared resource later).

The policy learns about a request only when it has finished (observations are delivered in
completion order); while the device's link is still carrying an earlier request at an
arrival, the policy is told how long that transfer has been under way (an ``Observation`` with
``done`` False: the device knows what it is still sending; told again each time that time has
grown by OVERDUE_STEP). A policy that asks for idle probes
(``Policy.next_probe``) gets them as the runtime's ``AdaptiveClient.idle`` sends them:
PROBE_BITS up the device's link, started when due and the link is free, observed when they
end; at most ``MAX_PROBES`` between two arrivals (the estimator's window holds no more).
Probes are not charged to the link's queue or to the energy.
"""
from __future__ import annotations

import heapq
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..adapt.estimators import Observation
from ..errors import TiercutError
from ..link.traces import BandwidthTrace
from ..planner.scenario import Scenario
from .costs import CPU, TRACE_LINK, Costs, device_powers
from .timeline import Timeline

if TYPE_CHECKING:
    from ..adapt.policies import Policy

PROBE_BITS = 64 * 1024 * 8  # an idle link is probed with this many bits (AdaptiveClient's too)
MAX_PROBES = 5  # probes simulated between two arrivals, at most
OVERDUE_STEP = 1.25  # a transfer under way is told again once its time has grown this much


class SimError(TiercutError, ValueError):
    """Bad simulator settings: arrivals, durations, traces."""


@dataclass(frozen=True)
class Arrivals:
    kind: str  # "poisson" or "periodic"
    rate: float  # requests per second

    def times(self, duration_s: float, seed: int = 0) -> np.ndarray:
        n = max(1, int(math.ceil(duration_s * self.rate)))
        if self.kind == "periodic":
            return np.arange(n, dtype=float) / self.rate
        rng = np.random.default_rng(seed)
        t = np.cumsum(rng.exponential(1.0 / self.rate, size=int(n * 1.2) + 20))
        return t[t < duration_s]


def parse_arrivals(text: str) -> Arrivals:
    """'poisson:5/s', 'periodic:10/s' (the '/s' may be left out)."""
    m = re.fullmatch(r"\s*(poisson|periodic):([0-9.eE+-]+)\s*(/s)?\s*", text or "")
    if not m:
        raise SimError(f"arrivals {text!r} must look like poisson:5/s or periodic:10/s")
    try:
        rate = float(m.group(2))
    except ValueError:
        raise SimError(f"arrivals {text!r}: {m.group(2)!r} is not a number of requests per "
                       "second") from None
    if not (math.isfinite(rate) and rate > 0):
        raise SimError(f"arrivals {text!r}: the rate must be > 0 requests per second")
    return Arrivals(m.group(1), rate)


def parse_duration(text: str) -> float:
    """'600s', '10m', '1h', '500ms' or a number of seconds."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(ms|s|m|min|h)?\s*", str(text))
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}
    try:
        value = float(m.group(1)) * scale[m.group(2)] if m else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SimError(f"duration {text!r} must be a positive time like 600s, 10m, 1h or 500ms")
    return value


@dataclass
class RunResult:
    policy: str
    arrivals: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    plan_index: np.ndarray  # index into ``cuts`` per request
    cuts: list[str]  # placement of each plan used, in order of first use
    switches: int
    wall_s: float
    deadline_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        lat = self.latency_s
        n = len(lat)
        q = np.percentile(lat, [50, 95, 99]) if n else [math.nan] * 3
        return {
            "policy": self.policy, "requests": n,
            "mean_s": float(lat.mean()) if n else math.nan,
            "p50_s": float(q[0]), "p95_s": float(q[1]), "p99_s": float(q[2]),
            "deadline_s": self.deadline_s,
            "deadline_misses": int((lat > self.deadline_s).sum()) if self.deadline_s else None,
            "energy_j_per_request": float(self.energy_j.mean()) if n else math.nan,
            "energy_j": float(self.energy_j.sum()),
            "switches": self.switches, "plans_used": len(self.cuts),
            "sim_requests_per_s": n / self.wall_s if self.wall_s > 0 else math.inf,
            "notes": list(self.notes),
        }


class Simulator:
    """One scenario, one device-link trace (and optionally a load trace of ``load_tier``)."""

    def __init__(self, scenario: Scenario, trace: BandwidthTrace,
                 load_trace: BandwidthTrace | None = None, load_tier: str | None = None,
                 costs: Costs | None = None):
        self.scenario = scenario
        self.timeline = Timeline(trace)
        self.load = Timeline(load_trace) if load_trace is not None else None
        if load_trace is not None and load_tier is None:
            load_tier = scenario.tiers[1] if len(scenario.tiers) > 1 else scenario.tiers[0]
        self.load_tier = load_tier
        self.load_hosts = {f"cpu:{h.name}" for h in scenario.hosts_of(load_tier)} if load_tier else set()
        self.device_cpu = {f"cpu:{h.name}" for h in scenario.hosts_of(scenario.tiers[0])}
        self.costs = costs or Costs(scenario)
        self.power_c, self.power_r = device_powers(scenario)

    def run(self, policy: "Policy", arrivals: Arrivals | np.ndarray, duration_s: float,
            seed: int = 0, deadline_s: float | None = None) -> RunResult:
        times = arrivals if isinstance(arrivals, np.ndarray) else arrivals.times(duration_s, seed)
        times_list = times.tolist()
        n = len(times_list)
        latency = [0.0] * n
        energy = [0.0] * n
        index = [0] * n
        resources: dict[str, int] = {}
        free: list[float] = []
        compiled: dict[int, tuple] = {}
        cuts: list[str] = []
        finish = self.timeline.finish
        load_at = self.load.rate_at if self.load is not None else None
        pc, pr = self.power_c, self.power_r
        observes = policy.observes
        every = policy.probe_every_s if observes else math.inf
        probes = math.isfinite(every)
        pending: list = []
        sending: deque = deque()  # (start, end, bits) on the device's uplink, in order
        told = 0.0  # how long the head of ``sending`` was under way when last told
        uplink = -1  # resource of the device's first forward link, for the backlog
        device_cpu = -1
        last = None
        switches = missed = 0
        why = ""
        start_wall = time.perf_counter()
        for k in range(n):
            t = times_list[k]
            while pending and pending[0][0] <= t:
                policy.observe(heapq.heappop(pending)[2])
            if sending:
                while sending and sending[0][1] <= t:
                    sending.popleft()
                    told = 0.0
                if sending and t - sending[0][0] > told * OVERDUE_STEP:
                    s0, _, b0 = sending[0]
                    told = t - s0
                    policy.observe(Observation(t, b0, told, done=False))
            if probes and policy.next_probe() <= t:
                s = max(policy.next_probe(), t - MAX_PROBES * every)
                for _ in range(MAX_PROBES):
                    if s > t:
                        break
                    if s < 0.0:
                        s = 0.0
                    if uplink >= 0 and free[uplink] > s:
                        s = free[uplink]
                    e = finish(s, PROBE_BITS)
                    if e > t:
                        break
                    policy.observe(Observation(e, PROBE_BITS, e - s))
                    s = policy.next_probe()
            backlog = 0.0
            if device_cpu >= 0 and free[device_cpu] > t:
                backlog += free[device_cpu] - t
            if uplink >= 0 and free[uplink] > t:
                backlog += free[uplink] - t
            p = policy.next_plan(t, backlog)
            if policy.unreachable:
                missed += 1
                why = policy.unreachable
            c = compiled.get(id(p))
            if c is None:
                cost = self.costs(p)
                steps = []
                for kind, res, seconds, bits, held in cost.steps:
                    if res not in resources:
                        resources[res] = len(free)
                        free.append(0.0)
                    flag = 1 if res in self.device_cpu else (2 if res in self.load_hosts else 0)
                    steps.append((kind, resources[res], seconds, bits, held, flag))
                    if kind == TRACE_LINK and uplink < 0:  # forward hops come first
                        uplink = resources[res]
                    if flag == 1:
                        device_cpu = resources[res]
                if cost.cut not in cuts:
                    cuts.append(cost.cut)
                c = compiled[id(p)] = (tuple(steps), cuts.index(cost.cut), cost.device_s, p)
            if c is not last:
                if last is not None and c[1] != last[1]:
                    switches += 1
                last = c
            speed, frac = policy.speed, policy.send_fraction
            x = t
            tx = 0.0
            seen_load = None
            for kind, rid, seconds, bits, held, flag in c[0]:
                if kind == CPU:
                    if seconds == 0.0:
                        continue
                    if flag == 1:
                        seconds /= speed
                    elif flag == 2 and load_at is not None:
                        seen_load = load_at(x)
                        seconds *= seen_load
                    f = free[rid]
                    x = (f if f > x else x) + seconds
                    free[rid] = x
                elif kind == TRACE_LINK:
                    if bits > 0.0:
                        f = free[rid]
                        s = f if f > x else x
                        x = finish(s, bits / frac)
                        tx += x - s
                        free[rid] = x
                        if rid == uplink and observes:
                            sending.append((s, x, bits))
                    x += seconds
                else:
                    if held > 0.0:
                        f = free[rid]
                        x = (f if f > x else x) + held
                        free[rid] = x
                    x += seconds
            latency[k] = x - t
            energy[k] = pc * c[2] * speed * speed + pr * tx * frac * frac
            index[k] = c[1]
            if observes:
                if tx > 0.0:
                    bits_total = 0.0
                    for step in c[0]:
                        if step[0] == TRACE_LINK:
                            bits_total += step[3]
                    obs = Observation(x, bits_total, tx * frac, seen_load)
                else:  # nothing crossed the link: the idle probes tell the rate
                    obs = Observation(x, 0.0, 0.0, seen_load)
                if seen_load is None and load_at is not None:
                    obs.load = load_at(x)  # the server's Load reply
                heapq.heappush(pending, (x, k, obs))
        wall = time.perf_counter() - start_wall
        notes = [f"goal unreachable for {missed} of {n} requests, e.g. {why}"] if missed else []
        return RunResult(policy.name, times, np.asarray(latency), np.asarray(energy),
                         np.asarray(index), cuts, switches, wall, deadline_s, notes)
