"""Decision tables (CIC): precompute the plans that are optimal for some bandwidth, then answer
"best plan now" without solving again.

With the labels fixed, a plan's latency is affine in x = 1/bandwidth of the device's link and
in the load factor of one tier: cost = base + per_inv_bw·x + per_load·(load - 1). The best cost
over plans is the lower envelope of those planes. Along x it is found exactly (Eisner–Severance):
solve at both ends of an interval; if one plan wins both, it wins throughout (the envelope is
concave); otherwise solve where the two lines cross, and recurse only if a third plan wins
there. Along the load axis the table keeps the envelopes at the given load levels; a lookup
takes the cheapest of all kept plans at the queried point.
"""
from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass

from .build import Constraints, build
from .plan import Plan
from .problem import evaluate
from .scenario import Link, Scenario, ScenarioError
from .solve import plan as solve


@dataclass(frozen=True)
class Entry:
    plan: Plan
    base: float  # cost at x = 0 and load 1
    per_inv_bw: float  # seconds per (1 / bit/s)
    per_load: float  # seconds per unit of load above 1

    def cost(self, bandwidth_bps: float, load: float = 1.0) -> float:
        return self.base + self.per_inv_bw / bandwidth_bps + self.per_load * (load - 1.0)


@dataclass(frozen=True)
class DecisionTable:
    load_tier: str | None
    entries: tuple[Entry, ...]
    breakpoints: tuple[float, ...]  # bandwidths (bit/s, ascending) where the best plan changes
    segments: tuple[int, ...]  # entry index winning below breakpoints[0], between, and above

    def best(self, bandwidth_bps: float, load: float = 1.0) -> Plan:
        if not bandwidth_bps > 0:
            raise ScenarioError(f"bandwidth must be > 0 bit/s, got {bandwidth_bps!r}")
        if load == 1.0 or self.load_tier is None:
            return self.entries[self.segments[bisect.bisect_right(self.breakpoints, bandwidth_bps)]].plan
        return min(self.entries, key=lambda e: e.cost(bandwidth_bps, load)).plan


def with_device_bandwidth(scenario: Scenario, bandwidth_bps: float) -> Scenario:
    """The scenario with every link that touches the device set to ``bandwidth_bps``."""
    device = {scenario.tiers[0], *(h.name for h in scenario.hosts_of(scenario.tiers[0]))}
    links = {k: (Link(bandwidth_bps, v.latency_s) if device & set(k) else v)
             for k, v in scenario.links.items()}
    return dataclasses.replace(scenario, links=links)


def with_load(scenario: Scenario, tier: str, load: float) -> Scenario:
    hosts = tuple(dataclasses.replace(h, load=h.load * load) if h.tier == tier else h
                  for h in scenario.hosts)
    return dataclasses.replace(scenario, hosts=hosts)


def plan_cost(scenario: Scenario, p: Plan) -> float:
    """The latency of plan ``p``'s placement under ``scenario`` (links or loads changed)."""
    problem, _ = build(scenario, p.route)
    tiers = [scenario.tiers[t] for t in p.route.tiers]
    labels = [0] * problem.n_inputs + [tiers.index(p.assignment[n])
                                       for n in problem.names[problem.n_inputs:]]
    return evaluate(problem, labels)


def build_table(scenario: Scenario, constraints: Constraints = Constraints(),
                low_bps: float = 1e5, high_bps: float = 1e10, load_tier: str | None = None,
                loads: tuple[float, ...] = (1.0,)) -> DecisionTable:
    if not 0 < low_bps < high_bps:
        raise ScenarioError(f"bandwidth range must satisfy 0 < low < high, got {low_bps}..{high_bps}")
    if load_tier is not None:
        scenario.tier_index(load_tier)

    def at(bps: float, load: float) -> Plan:
        s = with_device_bandwidth(scenario, bps)
        return solve(with_load(s, load_tier, load) if load_tier else s, "latency", constraints)

    entries: dict[tuple, Entry] = {}

    def entry(p: Plan) -> Entry:
        key = (p.route, tuple(sorted(p.assignment.items())))
        if key not in entries:
            lo, hi = (with_device_bandwidth(scenario, b) for b in (1.0, 2.0))
            c1, c2 = plan_cost(lo, p), plan_cost(hi, p)  # x = 1 and x = 0.5
            per_inv_bw = 2.0 * (c1 - c2)
            per_load = (plan_cost(with_load(hi, load_tier, 2.0), p) - c2) if load_tier else 0.0
            entries[key] = Entry(p, c1 - per_inv_bw, per_inv_bw, per_load)
        return entries[key]

    base_segments: list[tuple[float, Entry]] = []  # (from this bandwidth upward, winner)
    for load in loads:
        segs = _envelope(lambda b: entry(at(b, load)), low_bps, high_bps, load)
        if load == 1.0:
            base_segments = segs
    keys = list(entries)
    index = {id(entries[k]): i for i, k in enumerate(keys)}
    if not base_segments:
        base_segments = _envelope(lambda b: entry(at(b, 1.0)), low_bps, high_bps, 1.0)
    return DecisionTable(
        load_tier, tuple(entries[k] for k in keys),
        breakpoints=tuple(b for b, _ in base_segments[1:]),
        segments=tuple(index[id(e)] for _, e in base_segments))


def _envelope(best_at, low: float, high: float, load: float) -> list[tuple[float, Entry]]:
    """[(bandwidth from which it wins, entry), ...] ascending, exact along 1/bandwidth."""
    def split(b_lo: float, e_lo: Entry, b_hi: float, e_hi: Entry) -> list[tuple[float, Entry]]:
        if e_lo is e_hi:
            return [(b_lo, e_lo)]
        # e_lo wins at the low bandwidth (large x = 1/b); find where the two lines cross
        a_lo = e_lo.base + e_lo.per_load * (load - 1)
        a_hi = e_hi.base + e_hi.per_load * (load - 1)
        slope = e_lo.per_inv_bw - e_hi.per_inv_bw
        x = (a_hi - a_lo) / slope if slope else 0.0
        if not 1.0 / b_hi < x < 1.0 / b_lo:
            return [(b_lo, e_lo), (b_hi, e_hi)]
        b_mid = 1.0 / x
        e_mid = best_at(b_mid)
        if e_mid is e_lo or e_mid is e_hi or e_mid.cost(b_mid, load) >= e_lo.cost(b_mid, load) * (1 - 1e-12):
            return [(b_lo, e_lo), (b_mid, e_hi)]  # nothing beats the two lines where they cross
        return split(b_lo, e_lo, b_mid, e_mid) + split(b_mid, e_mid, b_hi, e_hi)

    segs = split(low, best_at(low), high, best_at(high))
    merged: list[tuple[float, Entry]] = []
    for b, e in segs:
        if not merged or merged[-1][1] is not e:
            merged.append((b, e))
    return merged
