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
end; at most ``MAX_PROBES`` between two arrivals (the default estimator window holds no more). A
probe still under way at an arrival is told like a transfer under way (a bound on the rate),
as the runtime's probe reports one that its time limit cut short, and told again at later
arrivals while it lasts (no new probe is sent behind it).
Probes hold the device's link as a transfer does (what comes next waits behind them); they are
not charged to the energy.

A request the policy hedges (``Policy.hedge``, e.g. the ``hedged`` policy) is also run to the
end on the device, from where its own part ends (once the device's processor is free): it
finishes with whichever answer comes first, and the device computes until then (that time is
charged to its energy and holds its processor). With ``Policy.hedge_after_s`` that run starts
so much later, and not at all if the answer comes first; the processor counts as held through
the wait (conservative for a request arriving during it). What the request sent still holds
the links and servers it was sent to (bits handed to the radio cannot be called back), and
its transfer is observed as usual.

A policy with ``replans`` set (the ``robust`` policy) may change its mind about a request
still queued on the device: such a request (its plan starts on the device's processor, and
that is busy) waits, and when its turn comes the policy is told what it could know by then
(finished requests, transfers and probes as at an arrival) and asked ``replan_queued(now,
plan)``: another plan (with its ``hedge`` settings), or None to keep it; it then walks that
plan from there (``RunResult.replanned`` counts those given another placement). Other
policies' requests are taken as above, their figures unchanged.
"""
from __future__ import annotations

import heapq
from array import array
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..adapt.estimators import PROBE_BITS, Observation
from ..errors import TiercutError
from ..link.traces import BandwidthTrace
from ..planner.scenario import Scenario
from ..adapt.costs import Costs, device_powers
from .steps import DELAY, DEVICE_CPU, FORK, LOADED_CPU, TRANSFER, Resources
from .timeline import Timeline

if TYPE_CHECKING:
    from ..adapt.policies import Policy

MAX_PROBES = 5  # probes simulated between two arrivals, at most (policies.WINDOW)
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
    hedged: int = 0  # requests also run to the end on the device (Policy.hedge)
    local_wins: int = 0  # of those, answered by the device first
    replanned: int = 0  # requests given another plan while queued (Policy.replan_queued)

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
            "hedged": self.hedged, "local_wins": self.local_wins,
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

    def _probe(self, policy: "Policy", t: float, every: float, free: list[float],
               uplink: int) -> tuple[float, float] | None:
        """The idle probes due by ``t`` (one each ``every`` seconds): each starts when due and
        the uplink is free, and is observed if it has ended by ``t``. Returns (start, end) of
        a probe still under way at ``t``, if one is."""
        finish = self.timeline.finish
        s = max(policy.next_probe(), t - MAX_PROBES * every)
        for _ in range(MAX_PROBES):
            if s > t:
                break
            if s < 0.0:
                s = 0.0
            if uplink >= 0 and free[uplink] > s:
                s = free[uplink]
            e = finish(s, PROBE_BITS)
            if uplink >= 0:
                free[uplink] = e  # what comes next waits for the probe's bits
            if e > t:  # still under way: how long it has taken so far bounds the rate
                if t > s:
                    policy.observe(Observation(t, PROBE_BITS, t - s, done=False))
                return (s, e)
            policy.observe(Observation(e, PROBE_BITS, e - s))
            s = policy.next_probe()
        return None

    def run(self, policy: "Policy", arrivals: Arrivals | np.ndarray, duration_s: float,
            seed: int = 0, deadline_s: float | None = None) -> RunResult:
        # The loop below runs once per request, so it keeps what it needs in local variables
        # and does per plan (``Resources.compile``) whatever does not depend on the request.
        times = arrivals if isinstance(arrivals, np.ndarray) else arrivals.times(duration_s, seed)
        if getattr(policy, "replans", False):  # queued requests decided again: see the notes
            from .queued import run_replanning
            head, tail = run_replanning(self, policy, times, OVERDUE_STEP)
            return RunResult(policy.name, times, *head, deadline_s, *tail)
        times_list = times.tolist()
        n = len(times_list)
        # per request, as C doubles: a list would keep two float objects alive per request
        latency = array("d", bytes(8 * n))
        energy = array("d", bytes(8 * n))
        index = [0] * n
        finish = self.timeline.finish
        load_at = self.load.rate_at if self.load is not None else None
        servers = Resources(self, load_at is not None)
        free, compiled, forks = servers.free, servers.compiled, servers.forks
        uplink = device_cpu = -1  # copies of servers' (set when a plan is first compiled)
        device_links = servers.device_links  # the same list, grown as plans are compiled
        pc, pr = self.power_c, self.power_r
        observes = policy.observes
        every = policy.probe_every_s if observes else math.inf
        probes = math.isfinite(every)
        # the policy hears of a finished request or a transfer under way only at a later
        # arrival: what ends (or starts) after the last one can never be told, so it is not
        # queued (under overload that is most requests, and their records cost memory and time)
        horizon = max(times_list, default=0.0)
        # finished requests, delivered to the policy in completion order: (end, k, bits,
        # seconds, load); the Observation is only built when it is delivered
        pending: list = []
        sending: deque = deque()  # (start, end, bits) on the device's uplink, in order
        told = 0.0  # how long the head of ``sending`` was under way when last told
        stuck, probe_told = None, 0.0  # a probe under way at the last arrival; as ``told``
        last = None
        steps: tuple = ()
        cut = 0
        device_s = link_bits = 0.0
        switches = missed = hedged = local_wins = 0
        why = ""
        heappush, heappop = heapq.heappush, heapq.heappop
        start_wall = time.perf_counter()
        for k in range(n):
            t = times_list[k]
            while pending and pending[0][0] <= t:
                end, _, bits, seconds, load = heappop(pending)
                if load is None and load_at is not None:
                    load = load_at(end)  # the server's Load reply
                policy.observe(Observation(end, bits, seconds, load))
            if sending:
                while sending and sending[0][1] <= t:
                    sending.popleft()
                    told = 0.0
                if sending and t - sending[0][0] > told * OVERDUE_STEP:
                    s0, _, b0 = sending[0]
                    told = t - s0
                    policy.observe(Observation(t, b0, told, done=False))
            if stuck is not None:  # a probe still under way: told as a transfer is
                if stuck[1] <= t:
                    stuck = None
                elif t - stuck[0] > probe_told * OVERDUE_STEP:
                    probe_told = t - stuck[0]
                    policy.observe(Observation(t, PROBE_BITS, probe_told, done=False))
            if probes and policy.next_probe() <= t and stuck is None:
                stuck = self._probe(policy, t, every, free, uplink)
                if stuck is not None:
                    probe_told = max(t - stuck[0], 0.0)
            backlog = 0.0
            if device_cpu >= 0 and free[device_cpu] > t:
                backlog += free[device_cpu] - t
            for rid in device_links:
                if free[rid] > t:
                    backlog += free[rid] - t
            p = policy.next_plan(t, backlog)
            if policy.unreachable:
                missed += 1
                why = policy.unreachable
            c = compiled.get(id(p))
            if c is None:
                c = servers.compile(p)
                uplink, device_cpu = servers.uplink, servers.device_cpu
            if c is not last:
                if last is not None and c.cut != last.cut:
                    switches += 1
                last = c
                steps, cut, device_s, link_bits = c.steps, c.cut, c.device_s, c.link_bits
            speed, frac = policy.speed, policy.send_fraction
            x = t
            tx = 0.0
            seen_load = None
            for op, rid, hold, after, bits in steps:
                if op == TRANSFER:
                    f = free[rid]
                    s = f if f > x else x
                    x = finish(s, bits / frac)
                    tx += x - s
                    free[rid] = x
                    if rid == uplink and observes and s <= horizon:
                        sending.append((s, x, bits))
                elif op == FORK:  # parts at once from x, each a chain; the slowest ends it
                    end = x
                    for part in forks[rid]:
                        y = x
                        for op2, rid2, hold2, after2 in part:
                            if op2 != DELAY:
                                if op2 == LOADED_CPU:
                                    hold2 *= load_at(y)
                                f = free[rid2]
                                y = (f if f > y else y) + hold2
                                free[rid2] = y
                            y += after2
                        if y > end:
                            end = y
                    x = end
                elif op != DELAY:
                    if op == DEVICE_CPU:
                        hold /= speed
                    elif op == LOADED_CPU:
                        seen_load = load_at(x)
                        hold *= seen_load
                    f = free[rid]
                    x = (f if f > x else x) + hold
                    free[rid] = x
                x += after
            done = x
            hedge_j = 0.0
            if link_bits > 0.0 and policy.hedge:
                # the rest of the model on the device too, once its own part is done and its
                # processor free (both: when the processor is next free, if not before the
                # arrival), plus the policy's wait; the first to finish answers and the
                # device stops there
                hedged += 1
                hs = (free[device_cpu] if free[device_cpu] > t else t) + policy.hedge_after_s
                he = hs + (self.costs.device_alone_s() - device_s) / speed
                if he < x:
                    done = he
                    local_wins += 1
                if done > hs:  # (an answer before a delayed start leaves the device idle)
                    free[device_cpu] = done
                    hedge_j = pc * (done - hs) * speed * speed * speed
            latency[k] = done - t
            energy[k] = pc * device_s * speed * speed + pr * tx * frac * frac + hedge_j
            index[k] = cut
            if observes and x <= horizon:
                # when nothing crossed the link, no rate: the idle probes tell it
                heappush(pending, (x, k, link_bits, tx * frac, seen_load) if tx > 0.0
                         else (x, k, 0.0, 0.0, seen_load))
        wall = time.perf_counter() - start_wall
        notes = [f"goal unreachable for {missed} of {n} requests, e.g. {why}"] if missed else []
        return RunResult(policy.name, times, np.asarray(latency), np.asarray(energy),
                         np.asarray(index), servers.cuts, switches, wall, deadline_s, notes,
                         hedged, local_wins)
