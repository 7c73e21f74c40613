"""Re-partitioning policies, one interface: ``observe(observation)`` after each request,
``next_plan(now, backlog_s)`` before the next one.

* ``static``: the best plan at start (Neurosurgeon), never changed.
* ``adaptive``: the decision table's plan for the current bandwidth estimate (JALAD, dynamic
  split computing); a lookup is a bisection.
* ``hedged``: adaptive, and while the link is uncertain a request is both sent and run to the
  end on the device (the first answer wins): a remote plan once the link was, within the last
  ``hedge_window_s``, slower than the plan's break-even rate (where the device alone would
  have been faster); and instead of keeping a request on the device, the plan for the best
  rate seen in that window, once that rate beats the device. A request sent into an outage
  then costs the all-device time, not the outage's, and one kept on the device through the
  end of a dip gets the link back. The price is device energy and link traffic while both run
  (redundant requests), so a remote plan is raced only while the device has time to spare
  (``HEDGE_BUSY``). ``hedge_after`` > 0 starts the device's run of a remote plan only once
  the answer is that fraction of the plan's predicted latency late (a backup request): less
  energy, and a stalled request answered that much later.
* ``loadaware``: the same with the table's load axis and the watched tier's observed load
  (LoADPart).
* ``dads``: latency mode while the latency plan sustains the frame rate, else the throughput
  plan (DADS light/heavy); when no plan sustains it, ``unreachable`` says so (or, ``strict``,
  ``FrameRateError`` is raised) instead of a silent miss.
* ``lyapunov``: drift-plus-penalty (CutEdge): per request, choose among the table's plans, a
  device speed setting and a sending rate the option minimising V·energy + Q·device time, Q
  the device's backlog in seconds. Larger V: less energy, longer queues.
* ``oracle``: knows the future trace: the plan with the least latency given the bandwidth each
  transfer will actually see (queueing aside).

Device energy model for speed f and sending fraction r (both in (0, 1]): compute at f takes
time/f at power P_c·f³ (dynamic power), so energy P_c·time·f²; sending at r of the link's rate
takes bits/(r·rate) at radio power P_r·r² (a convex rate-power curve), so energy P_r·r·bits/rate.
f = r = 1 is the planner's energy model.

Idle probes: a request whose plan keeps everything on the device sends nothing over the link,
so it tells the bandwidth estimator nothing. Policies that estimate bandwidth ask for a small
probe once no transfer has been seen for ``probe_every_s`` (``next_probe``); the runtime's
``AdaptiveClient.idle`` and the simulator send them and feed the result back through
``observe`` like any transfer.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import TiercutError
from ..planner.plan import Plan
from ..planner.scenario import Scenario
from ..planner.solve import plan as solve
from ..planner.table import DecisionTable, Entry, with_device_bandwidth
from ..sim.costs import CPU, TRACE_LINK, Costs, PlanCost, device_powers
from .estimators import BandwidthEstimator, LoadEstimator, Observation, RateRange

POLICIES = ("static", "adaptive", "hedged", "loadaware", "dads", "lyapunov", "oracle")
PROBE_EVERY_S = 1.0  # an idle link is probed this often (seconds without a transfer)
WINDOW = 5  # transfers the bandwidth estimator keeps (see estimators.BandwidthEstimator)
HEDGE_WINDOW_S = 60.0  # the hedged policy's memory of how slow and how fast the link was
HEDGE_AFTER = 0.0  # the hedged policy's wait before the device's run, in predicted latencies
# The hedged policy races a remote plan only while its predicted latency (about what a race
# holds the device for) is below this fraction of the mean time between arrivals: a device
# kept busier by redundant runs queues the requests that follow (Irish 5G traces, MobileNetV2
# at 5 requests/s: 2.9x the oracle's mean latency racing every time, 1.04x with this rule).
HEDGE_BUSY = 0.5
ARRIVAL_ALPHA = 0.1  # EWMA weight of the newest time between arrivals


class PolicyError(TiercutError, ValueError):
    """An unknown policy name or settings a policy cannot work with."""


class FrameRateError(TiercutError, RuntimeError):
    """No plan sustains the requested frame rate at the current bandwidth."""


class Policy:
    name = "policy"
    observes = False  # whether observe() does anything (the simulator skips building them)
    speed = 1.0  # device speed setting for the next request
    send_fraction = 1.0  # fraction of the link's rate to send at
    unreachable = ""  # why the policy's goal cannot be met, when it cannot
    probe_every_s = math.inf  # idle probes: after this long without a transfer (inf: never)
    hedge = False  # run the next request to the end on the device too (the first answer wins)
    hedge_after_s = 0.0  # ... starting that run once the request has been away this long

    def observe(self, obs: Observation) -> None:
        pass

    def next_probe(self) -> float:
        """When (policy clock) the next idle probe is due; ``math.inf``: never."""
        return self.bandwidth.last_t + self.probe_every_s if math.isfinite(
            self.probe_every_s) else math.inf

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        raise NotImplementedError


class StaticPolicy(Policy):
    name = "static"

    def __init__(self, plan: Plan):
        self.plan = plan

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        return self.plan


class AdaptivePolicy(Policy):
    name = "adaptive"
    observes = True

    def __init__(self, table: DecisionTable, initial_bps: float,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S):
        self.table = table
        self.bandwidth = estimator or BandwidthEstimator(initial_bps)
        self.probe_every_s = _check_probe(probe_every_s)
        self._at, self._plan = None, None

    def observe(self, obs: Observation) -> None:
        self.bandwidth.observe(obs)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw != self._at:
            self._at, self._plan = bw, self.table.best(bw)
        return self._plan


class HedgedPolicy(AdaptivePolicy):
    """The adaptive policy's plans, hedged with the device while the link is uncertain.

    ``local_s``: the all-device latency. A plan of latency base + bits/rate is slower than the
    device alone below the rate bits / (local_s - base), its break-even rate. A hedged request
    runs its plan and, from where the device's own part ends, the rest of the model on the
    device too; the first answer wins (the device's answer comes at about ``local_s``, so a
    hedged plan is never much slower than the device alone). Within ``window_s``
    (``RateRange``):

    * the estimate says send: hedge when the link fell below the plan's break-even rate;
    * the estimate says keep it on the device: when a transfer reached a rate at which the
      table's plan beats the device, send that plan, hedged (the device computes as it would
      have, and a link that has come back answers sooner).

    The first case also needs a device with time to spare: the plan's predicted latency below
    ``HEDGE_BUSY`` × the mean time between arrivals. On a steady link neither happens and this
    is the adaptive policy.

    ``after``: in the first case the device's run starts once the answer is ``after`` × the
    plan's predicted latency (at the estimate) overdue (``Policy.hedge_after_s``); in the
    second it starts at once, as the device would have computed anyway."""

    name = "hedged"

    def __init__(self, table: DecisionTable, initial_bps: float, local_s: float,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S, window_s: float = HEDGE_WINDOW_S,
                 after: float = HEDGE_AFTER):
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.range = RateRange(window_s)
        self.after = _check_after(after)
        self._last, self._gap = None, None  # the last arrival; mean time between arrivals
        self._costed, self._expected = None, 0.0  # (plan, estimate) -> its predicted latency
        self.break_even = {id(e.plan): break_even_bps(e, local_s) for e in table.entries}
        self.entries = {id(e.plan): e for e in table.entries}

    def observe(self, obs: Observation) -> None:
        super().observe(obs)
        self.range.observe(obs)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        p = super().next_plan(now, backlog_s)
        if self._last is not None:
            gap, mean = now - self._last, self._gap
            self._gap = gap if mean is None else mean + ARRIVAL_ALPHA * (gap - mean)
        self._last = now
        rate = self.break_even.get(id(p), 0.0)
        if rate > 0.0:
            bw = self.bandwidth.estimate_bps
            if (p, bw) != self._costed:  # most requests: neither has changed
                self._costed, self._expected = (p, bw), self.entries[id(p)].cost(bw)
            expected = self._expected
            spare = not self._gap or expected < HEDGE_BUSY * self._gap
            self.hedge = spare and self.range.lowest(now) < rate
            self.hedge_after_s = self.after * expected
            return p
        high = self.range.highest(now)
        if high > 0.0:
            q = self.table.best(high)
            if 0.0 < self.break_even.get(id(q), 0.0) < high:
                self.hedge, self.hedge_after_s = True, 0.0
                return q
        self.hedge = False
        return p


def _check_after(after: float) -> float:
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not 0 <= after < math.inf:
        raise PolicyError(f"hedge delay {after!r} must be a number >= 0 (a fraction of the "
                          "plan's predicted latency; 0: race from the start)")
    return float(after)


def break_even_bps(e: Entry, local_s: float) -> float:
    """The device-link rate below which ``e``'s plan is slower than the device alone (0: it
    sends nothing; inf: it is never faster)."""
    if e.per_inv_bw <= 0:
        return 0.0
    return e.per_inv_bw / (local_s - e.base) if local_s > e.base else math.inf


class LoadAwarePolicy(AdaptivePolicy):
    name = "loadaware"

    def __init__(self, table: DecisionTable, initial_bps: float,
                 estimator: BandwidthEstimator | None = None, load: LoadEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S):
        if table.load_tier is None:
            raise PolicyError("the load-aware policy needs a table built with a load_tier")
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.load = load or LoadEstimator()
        self._key = None
        self._raw = None  # (bandwidth, load factor) that gave ``_key``

    def observe(self, obs: Observation) -> None:
        super().observe(obs)
        if obs.load is not None and obs.done:
            self.load.add(obs.load)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw, factor = self.bandwidth.estimate_bps, self.load.factor
        if (bw, factor) == self._raw:  # most requests: neither estimate has moved
            return self._plan
        self._raw = (bw, factor)
        key = (bw, round(factor, 3))
        if key != self._key:
            self._key, self._plan = key, self.table.best(key[0], key[1])
        return self._plan


def stage_periods(c: PlanCost, bandwidth_bps: float) -> float:
    """Seconds per request of the slowest pipeline stage (a compute tier or a link)."""
    worst = 0.0
    for kind, _, seconds, bits, held in c.steps:
        s = seconds if kind == CPU else (bits / bandwidth_bps if kind == TRACE_LINK else held)
        worst = max(worst, s)
    return worst


class DadsPolicy(AdaptivePolicy):
    name = "dads"

    def __init__(self, scenario: Scenario, table: DecisionTable, fps: float, initial_bps: float,
                 strict: bool = False, costs: Costs | None = None,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S):
        if not (math.isfinite(fps) and fps > 0):
            raise PolicyError(f"frame rate must be > 0 per second, got {fps!r}")
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.scenario, self.fps, self.strict = scenario, fps, strict
        self.costs = costs or Costs(scenario)
        self._heavy: dict[int, Plan] = {}
        self.mode = "light"

    def heavy(self, bw: float) -> Plan:
        bucket = round(math.log(bw) / math.log(1.05))  # plans cached per 5% of bandwidth
        if bucket not in self._heavy:
            self._heavy[bucket] = solve(with_device_bandwidth(self.scenario, 1.05 ** bucket),
                                        "throughput")
        return self._heavy[bucket]

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw == self._at:
            return self._plan
        self._at = bw
        light = self.table.best(bw)
        period = 1.0 / self.fps
        if stage_periods(self.costs(light), bw) <= period:
            self.mode, self._plan, self.unreachable = "light", light, ""
            return light
        heavy = self.heavy(bw)
        self.mode, self._plan = "heavy", heavy
        best = stage_periods(self.costs(heavy), bw)
        if best > period * (1 + 1e-9):
            self.unreachable = (f"{self.fps:g} frames/s cannot be sustained at {bw / 1e6:.3g} "
                                f"Mbit/s: the best pipeline manages {1 / best:.3g} frames/s")
            if self.strict:
                raise FrameRateError(self.unreachable)
        else:
            self.unreachable = ""
        return heavy


def _check_probe(every_s: float) -> float:
    if not every_s > 0:
        raise PolicyError(f"probe interval must be > 0 s (math.inf: never), got {every_s!r}")
    return every_s


@dataclass
class _Option:
    plan: Plan
    speed: float
    fraction: float


class LyapunovPolicy(Policy):
    name = "lyapunov"
    observes = True

    def __init__(self, scenario: Scenario, candidates: Sequence[Plan], V: float,
                 initial_bps: float, speeds: Sequence[float] = (0.4, 0.7, 1.0),
                 fractions: Sequence[float] = (0.25, 0.5, 1.0), costs: Costs | None = None,
                 probe_every_s: float = PROBE_EVERY_S,
                 estimator: BandwidthEstimator | None = None):
        if not (math.isfinite(V) and V >= 0):
            raise PolicyError(f"V must be a finite number >= 0, got {V!r}")
        for x in (*speeds, *fractions):
            if not 0 < x <= 1:
                raise PolicyError(f"speed settings and sending fractions must be in (0, 1], got {x!r}")
        self.V, self.speeds, self.fractions = V, tuple(speeds), tuple(fractions)
        self.costs = costs or Costs(scenario)
        self.candidates = [self.costs(p) for p in candidates]
        self.power_c, self.power_r = device_powers(scenario)
        self.bandwidth = estimator or BandwidthEstimator(initial_bps)
        self.probe_every_s = _check_probe(probe_every_s)
        self._grid = self._option_grid()
        self._at = None
        self._lines: list[tuple[float, float, _Option]] = []
        self._breaks: list[float] = []

    def observe(self, obs: Observation) -> None:
        self.bandwidth.observe(obs)

    def _option_grid(self) -> list[tuple[_Option, float, float, float, float, float]]:
        """Every plan × speed × sending fraction with the parts of its energy and device time
        that do not depend on the bandwidth: (option, P_c·s·f², P_r·r·bits, s/f, bits, r), s
        the plan's device compute at speed 1. The envelope is redrawn whenever the bandwidth
        estimate moves, so this is done once."""
        grid = []
        for c in self.candidates:
            for f in self.speeds:
                for r in self.fractions:
                    if c.device_bits == 0 and r != 1.0:
                        continue
                    grid.append((_Option(c.plan, f, r), self.power_c * c.device_s * f * f,
                                 self.power_r * r * c.device_bits, c.device_s / f,
                                 c.device_bits, r))
        return grid

    def options(self, bw: float) -> list[tuple[float, float, _Option]]:
        """(energy J, device seconds, option) for every plan × speed × sending fraction:
        energy P_c·s·f² + P_r·r·bits/bw, device time s/f + bits/(r·bw)."""
        return [(compute_j + radio / bw, compute_s + bits / (r * bw), o)
                for o, compute_j, radio, compute_s, bits, r in self._grid]

    def _envelope(self, bw: float) -> None:
        """Lower envelope over Q >= 0 of the lines V·energy + Q·busy (convex hull trick)."""
        options = self.options(bw)
        # (-slope, intercept, index): sorted by slope (busy) decreasing, then intercept; the
        # index keeps equal lines in the options' order, as a stable sort by the two would
        lines = sorted([(-b, self.V * e, i) for i, (e, b, _) in enumerate(options)])
        hull: list[tuple[float, float, int]] = []  # (intercept, slope, index), slopes decreasing
        breaks: list[float] = []
        for minus_b, a, i in lines:
            b = -minus_b
            if hull and hull[-1][1] == b:
                continue  # same slope, higher intercept (sorted)
            while hull:
                a0, b0, _ = hull[-1]
                x = (a - a0) / (b0 - b)  # where the new line gets cheaper
                if breaks and x <= breaks[-1]:
                    hull.pop()
                    breaks.pop()
                    continue
                if x <= 0:
                    hull.pop()
                    continue
                breaks.append(x)
                break
            hull.append((a, b, i))
            if len(hull) == 1:
                breaks.clear()
        self._lines, self._breaks = [options[i] for _, _, i in hull], breaks

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw != self._at:
            self._at = bw
            self._envelope(bw)
        o = self._lines[bisect.bisect_right(self._breaks, backlog_s)][2]
        self.speed, self.send_fraction = o.speed, o.fraction
        return o.plan


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


@dataclass
class Setting:
    """What building a policy by name may need."""

    scenario: Scenario
    table: DecisionTable
    initial_bps: float
    load_table: DecisionTable | None = None
    timeline: object = None  # sim.timeline.Timeline of the device link (the oracle)
    fps: float = 10.0
    V: float = 1.0
    costs: Costs | None = None
    probe_every_s: float = PROBE_EVERY_S  # idle probes of the policies that estimate bandwidth
    window: int = WINDOW  # transfers the bandwidth estimator keeps
    hedge_window_s: float = HEDGE_WINDOW_S  # the hedged policy's memory of the link's range
    hedge_after: float = HEDGE_AFTER  # its wait before the device runs, in predicted latencies


def candidates(table: DecisionTable) -> list[Plan]:
    return [e.plan for e in table.entries]


def build_policy(name: str, s: Setting) -> Policy:
    costs = s.costs or Costs(s.scenario)

    def estimator() -> BandwidthEstimator:
        return BandwidthEstimator(s.initial_bps, window=s.window)

    if name == "static":
        return StaticPolicy(s.table.best(s.initial_bps))
    if name == "adaptive":
        return AdaptivePolicy(s.table, s.initial_bps, estimator(), s.probe_every_s)
    if name == "hedged":
        return HedgedPolicy(s.table, s.initial_bps, costs.device_alone_s(), estimator(),
                            s.probe_every_s, s.hedge_window_s, s.hedge_after)
    if name == "loadaware":
        if s.load_table is None:
            raise PolicyError("the load-aware policy needs a load table (build one with a "
                              "load_tier and a load range)")
        return LoadAwarePolicy(s.load_table, s.initial_bps, estimator(),
                               probe_every_s=s.probe_every_s)
    if name == "dads":
        return DadsPolicy(s.scenario, s.table, s.fps, s.initial_bps, costs=costs,
                          estimator=estimator(), probe_every_s=s.probe_every_s)
    if name == "lyapunov":
        return LyapunovPolicy(s.scenario, candidates(s.table), s.V, s.initial_bps, costs=costs,
                              probe_every_s=s.probe_every_s, estimator=estimator())
    if name == "oracle":
        if s.timeline is None:
            raise PolicyError("the oracle needs the trace it is to know")
        return OraclePolicy(candidates(s.table), s.timeline, costs)
    raise PolicyError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")


def parse_policies(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PolicyError(f"no policy given; policies are {', '.join(POLICIES)}")
    for n in names:
        if n not in POLICIES:
            raise PolicyError(f"unknown policy {n!r}; policies are {', '.join(POLICIES)}")
    return names
