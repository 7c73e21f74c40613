"""Decision tables (CIC): precompute the plans that are optimal for some bandwidth (and load),
then answer "best plan now" without solving again.

With the labels fixed, a plan's latency is affine in x = 1/bandwidth of the device's link and
in the load factor of one tier: cost = base + per_inv_bw·x + per_load·(load - 1). The best cost
over plans is the lower envelope of those planes, a concave function; a plan that is optimal
at every vertex of a convex region is optimal throughout it.

* Bandwidth only (Eisner–Severance): solve at both ends of an interval; if one plan wins both,
  it wins throughout; otherwise solve where the two lines cross, and recurse only if a third
  plan wins there. A lookup is a bisection over the breakpoints.
* Bandwidth and load: start from the plans optimal at the four corners of the box; compute
  the cell where each known plan is the cheapest (the box clipped by one half-plane per other
  plan) and solve afresh at every cell vertex; a plan that beats the known ones there joins
  and the cells are computed again. When every vertex is confirmed, the known plans' envelope
  is the true one (concavity again). A lookup takes the cheapest kept plan at the point.

Answers are exact inside the range the table was built for; outside it they come from the
plans kept for the range.
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

TIE = 1e-12  # a fresh solve must beat the known plans by this much (relative) to join


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
    # At the base load (1, or the nearest end of the load range):
    breakpoints: tuple[float, ...]  # bandwidths (bit/s, ascending) where the best plan changes
    segments: tuple[int, ...]  # entry index winning below breakpoints[0], between, and above
    base_load: float = 1.0

    def best(self, bandwidth_bps: float, load: float | None = None) -> Plan:
        """The plan to use at this bandwidth of the device's link and load of ``load_tier``."""
        if not bandwidth_bps > 0:
            raise ScenarioError(f"bandwidth must be > 0 bit/s, got {bandwidth_bps!r}")
        if load is None or load == self.base_load or self.load_tier is None:
            return self.entries[self.segments[bisect.bisect_right(self.breakpoints, bandwidth_bps)]].plan
        if not load > 0:
            raise ScenarioError(f"load must be > 0, got {load!r}")
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
                load_range: tuple[float, float] = (1.0, 1.0)) -> DecisionTable:
    """The table for bandwidths low_bps..high_bps of the device's link and, when ``load_tier``
    is given, loads ``load_range`` of that tier (a factor on its compute time)."""
    if not 0 < low_bps < high_bps:
        raise ScenarioError(f"bandwidth range must satisfy 0 < low < high, got {low_bps}..{high_bps}")
    load_lo, load_hi = load_range
    if not 0 < load_lo <= load_hi:
        raise ScenarioError(f"load range must satisfy 0 < low <= high, got {load_lo}..{load_hi}")
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

    base = min(max(1.0, load_lo), load_hi)
    segments = _envelope(lambda b: entry(at(b, base)), low_bps, high_bps, base)
    if load_tier is not None and load_lo < load_hi:
        _envelope_2d(lambda b, load: entry(at(b, load)), list(entries.values()),
                     (1.0 / high_bps, 1.0 / low_bps), (load_lo, load_hi))
    keys = list(entries)
    index = {id(entries[k]): i for i, k in enumerate(keys)}
    return DecisionTable(
        load_tier, tuple(entries[k] for k in keys),
        breakpoints=tuple(b for b, _ in segments[1:]),
        segments=tuple(index[id(e)] for _, e in segments), base_load=base)


def _envelope_2d(best_at, known: list[Entry], xs: tuple[float, float],
                 loads: tuple[float, float]) -> None:
    """Add to ``known`` every plan optimal somewhere in the box x in xs (x = 1/bandwidth),
    load in loads, by confirming each vertex of the known plans' cells with a fresh solve."""
    def point(u: float, w: float) -> tuple[float, float]:  # unit square -> (bandwidth, load)
        return 1.0 / (xs[0] + u * (xs[1] - xs[0])), loads[0] + w * (loads[1] - loads[0])

    confirmed: set[tuple[float, float]] = set()
    todo = {(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)}
    while todo:
        for u, w in sorted(todo):
            confirmed.add((u, w))
            bps, load = point(u, w)
            e = best_at(bps, load)
            if any(e is k for k in known):
                continue
            if not known or e.cost(bps, load) < min(k.cost(bps, load) for k in known) * (1 - TIE):
                known.append(e)
        todo = {v for v in _cell_vertices(known, point) if v not in confirmed}


def _cell_vertices(known: list[Entry], point) -> set[tuple[float, float]]:
    """Vertices (in the unit square) of the region where each known plan is the cheapest."""
    # Each plan's cost on the unit square is affine: a + b·u + c·w.
    def plane(e: Entry) -> tuple[float, float, float]:
        (b0, l0), (b1, _), (_, l1) = point(0, 0), point(1, 0), point(0, 1)
        a = e.cost(b0, l0)
        return a, e.cost(b1, l0) - a, e.cost(b0, l1) - a

    planes = [plane(e) for e in known]
    vertices = set()
    for i, (a, b, c) in enumerate(planes):
        poly = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
        for j, (a2, b2, c2) in enumerate(planes):
            if j != i:  # keep where plan i is no dearer than plan j
                poly = _clip(poly, a - a2, b - b2, c - c2)
        vertices.update((round(u, 12), round(w, 12)) for u, w in poly)
    return vertices


def _clip(poly: list[tuple[float, float]], a: float, b: float, c: float
          ) -> list[tuple[float, float]]:
    """The part of convex polygon ``poly`` where a + b·u + c·w <= 0 (Sutherland–Hodgman)."""
    out = []
    for k, p in enumerate(poly):
        q = poly[(k + 1) % len(poly)]
        fp, fq = a + b * p[0] + c * p[1], a + b * q[0] + c * q[1]
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


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
