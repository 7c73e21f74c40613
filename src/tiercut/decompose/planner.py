"""How to divide a tiled run across hosts, and where to use one (D3's and AOFL's question).

The cost model. A run is tiled by rows of its last node's output; a part of rows [a, b) on
host h costs, from the host that holds the run's source (the *coordinator*):

    latency + src_rows(a, b) · src_row_bytes / rate      send the source rows, halo included
  + Σ_v seconds_h(v) · rows_v(a, b) / height_v          each node's share, halo included
  + latency + (b − a) · out_row_bytes / rate            the part's output back

where rows_v(a, b) are the rows of node v the part computes (``SpatialRun.part``; they depend
on a through their start and on b through their end only, so two tables per node give every
part's cost). The coordinator may take a part itself (no transfer). Parts run at once, each
host on its own link to the coordinator (a switched LAN: transfers do not share a medium), so
the run takes the slowest part's time, and stitching is a copy.

The search. For hosts in a fixed order taking contiguous row ranges, the best bounds are a
min-max partition solved exactly by dynamic programming over rows (``best_bounds``, numpy,
O(k·H²)). ``best_division(method="exact")`` does that for every ordered choice of up to
``max_parts`` hosts; ``brute_division`` enumerates every order and every set of bounds (the
reference the tests check against). Beyond a few hosts the orders grow factorially, so
``method="heuristic"`` tries one order only: hosts by the time each would take for the whole
run alone, fastest first, for k = 1.. max_parts (the benchmark reports its gap to the exact
search). ``plan_with_division`` then puts the best division of every candidate run into the
device/edge/cloud planner: the run's nodes pinned to the coordinator, their seconds replaced
by the division's, so the cut around it is chosen knowing the run is divided; it keeps the
undivided plan unless a division predicts less.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..graph.dag import Graph
from ..measure.profile import NodeProfile
from ..planner.build import Constraints
from ..planner.plan import Plan
from ..planner.scenario import Host, Scenario, ScenarioError
from ..planner.solve import plan as solve
from .rules import DecomposeError
from .spatial import SpatialRun


@dataclass(frozen=True)
class Worker:
    """A host that can take a part: its whole-output seconds per node of the run, and its link
    from the coordinator (``rate_bps`` = inf, ``latency_s`` = 0 for the coordinator itself)."""

    name: str
    seconds: Mapping[str, float]
    rate_bps: float = math.inf
    latency_s: float = 0.0
    # measured (share of the output's rows, a part's measured seconds over what this model
    # gives it, halo included) pairs: a smaller tile can run faster per row (its activations
    # stay in cache); the factor is interpolated in the share, 1 where none is given
    efficiency: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class RowCosts:
    """A run's rows as the cost model needs them (plain numbers, from ``row_costs``)."""

    first: str
    last: str
    names: tuple[str, ...]
    height: int  # rows of the last node's output
    node_height: Mapping[str, int]
    start: Mapping[str, np.ndarray]  # node -> first row computed, for each part start a
    end: Mapping[str, np.ndarray]  # node -> row after the last, for each part end b
    src_row_bytes: int  # one row of the source, all channels and columns
    out_row_bytes: int
    source: str


@dataclass(frozen=True)
class Division:
    workers: tuple[str, ...]  # in row order: the first takes rows from 0
    bounds: tuple[int, ...]  # the rows where each part but the last ends
    part_s: tuple[float, ...]
    method: str

    @property
    def total_s(self) -> float:
        return max(self.part_s)


def row_costs(run: SpatialRun) -> RowCosts:
    h = run.out_shape[2]
    w = run.out_shape[3]
    start = {v: np.zeros(h + 1, dtype=np.int64) for v in (*run.names, run.source)}
    end = {v: np.zeros(h + 1, dtype=np.int64) for v in (*run.names, run.source)}
    for a in range(h):
        for v, ((r0, _), _) in run.part(((a, h), (0, w))).rects.items():
            start[v][a] = r0
    for b in range(1, h + 1):
        for v, ((_, r1), _) in run.part(((0, b), (0, w))).rects.items():
            end[v][b] = r1
    src, out = run.shape[run.source], run.out_shape
    item = 4  # float32 activations (what the runtime sends raw)
    return RowCosts(run.names[0], run.last, run.names, h,
                    {v: run.shape[v][2] for v in (*run.names, run.source)}, start, end,
                    src[1] * src[3] * item, out[1] * out[3] * item, run.source)


def part_seconds(costs: RowCosts, worker: Worker) -> np.ndarray:
    """(H + 1) x (H + 1): the seconds of the part [a, b) on ``worker`` (inf where a >= b)."""
    h = costs.height
    total = np.zeros((h + 1, h + 1))
    for v in costs.names:
        rows = costs.end[v][None, :] - costs.start[v][:, None]
        total += worker.seconds.get(v, 0.0) * np.maximum(rows, 0) / costs.node_height[v]
    if worker.efficiency:
        share = (np.arange(h + 1)[None, :] - np.arange(h + 1)[:, None]) / h
        xs, ys = zip(*sorted(worker.efficiency))
        total *= np.interp(share, xs, ys)
    if math.isfinite(worker.rate_bps):
        src_rows = costs.end[costs.source][None, :] - costs.start[costs.source][:, None]
        out_rows = np.arange(h + 1)[None, :] - np.arange(h + 1)[:, None]
        total += 2 * worker.latency_s + 8.0 * (np.maximum(src_rows, 0) * costs.src_row_bytes
                                               + np.maximum(out_rows, 0) * costs.out_row_bytes
                                               ) / worker.rate_bps
    a, b = np.meshgrid(np.arange(h + 1), np.arange(h + 1), indexing="ij")
    total[a >= b] = np.inf
    return total


def part_terms(costs: RowCosts, worker: Worker, a: int, b: int) -> tuple[float, int, int]:
    """The part [a, b) on ``worker`` as ``part_seconds`` prices it, in its terms: seconds of
    compute (halo and efficiency included), source bytes sent to it, output bytes back."""
    if not 0 <= a < b <= costs.height:
        raise DecomposeError(f"rows [{a}, {b}) are not a part of {costs.height} rows")
    compute = sum(worker.seconds.get(v, 0.0) * max(int(costs.end[v][b] - costs.start[v][a]), 0)
                  / costs.node_height[v] for v in costs.names)
    if worker.efficiency:
        xs, ys = zip(*sorted(worker.efficiency))
        compute *= float(np.interp((b - a) / costs.height, xs, ys))
    src_rows = max(int(costs.end[costs.source][b] - costs.start[costs.source][a]), 0)
    return compute, src_rows * costs.src_row_bytes, (b - a) * costs.out_row_bytes


def best_bounds(matrices: Sequence[np.ndarray]) -> tuple[float, tuple[int, ...]]:
    """Min over bounds 0 < b1 < ... < H of the max part cost, hosts in the given order."""
    h = matrices[0].shape[0] - 1
    f = matrices[-1][:, h].copy()  # the last host takes rows r..H
    choices = []
    for m in reversed(matrices[:-1]):
        cand = np.maximum(m[:, :h], f[None, :h])  # this host takes r..e, the rest e..H
        e = np.argmin(cand, axis=1)
        f = cand[np.arange(h + 1), e]
        choices.append(e)
    bounds, r = [], 0
    for e in reversed(choices):
        r = int(e[r])
        bounds.append(r)
    return float(f[0]), tuple(bounds)


def best_division(costs: RowCosts, workers: Sequence[Worker], max_parts: int | None = None,
                  method: str = "exact") -> Division:
    """The division of the run over up to ``max_parts`` of ``workers`` that finishes first."""
    if not workers:
        raise DecomposeError("a division needs at least one worker")
    k_max = min(len(workers), max_parts or len(workers), costs.height)
    if method not in ("exact", "heuristic"):
        raise DecomposeError(f"division method {method!r}: accepted exact, heuristic")
    mats = {w.name: part_seconds(costs, w) for w in workers}
    if method == "exact":
        orders = (o for k in range(1, k_max + 1) for o in itertools.permutations(workers, k))
    else:
        ranked = sorted(workers, key=lambda w: mats[w.name][0, costs.height])
        orders = (tuple(ranked[:k]) for k in range(1, k_max + 1))
    best = None
    for order in orders:
        value, bounds = best_bounds([mats[w.name] for w in order])
        if best is None or value < best[0] - 1e-15:
            best = (value, order, bounds)
    value, order, bounds = best
    return _division(mats, order, bounds, method)


def _division(mats: Mapping[str, np.ndarray], order: Sequence[Worker], bounds: Sequence[int],
              method: str) -> Division:
    h = next(iter(mats.values())).shape[0] - 1
    edges = [0, *bounds, h]
    parts = tuple(float(mats[w.name][a, b]) for w, a, b in zip(order, edges, edges[1:]))
    return Division(tuple(w.name for w in order), tuple(bounds), parts, method)


def brute_division(costs: RowCosts, workers: Sequence[Worker], max_parts: int | None = None
                   ) -> Division:
    """Every ordered choice of hosts and every set of bounds: the reference."""
    k_max = min(len(workers), max_parts or len(workers), costs.height)
    mats = {w.name: part_seconds(costs, w) for w in workers}
    best = None
    for k in range(1, k_max + 1):
        for order in itertools.permutations(workers, k):
            for bounds in itertools.combinations(range(1, costs.height), k - 1):
                edges = [0, *bounds, costs.height]
                value = max(mats[w.name][a, b] for w, a, b in zip(order, edges, edges[1:]))
                if best is None or value < best[0]:
                    best = (value, order, bounds)
    return _division(mats, best[1], best[2], "brute")


# ---- the division inside the device/edge/cloud plan --------------------------------------
@dataclass(frozen=True)
class DividedPlan:
    """The plan, and the run its ``tier`` divides (None: dividing predicted no gain)."""

    plan: Plan  # the run's nodes carry the division's seconds on the coordinator
    undivided: Plan
    run: tuple[str, str] | None = None
    coordinator: str | None = None
    division: Division | None = None
    rows: RowCosts | None = None  # the divided run's rows (for ``part_terms``)

    @property
    def saving_s(self) -> float:
        return self.undivided.total_s - self.plan.total_s

    def to_dict(self) -> dict:
        """The plan's JSON with its ``division`` (None when undivided), as ``tiercut plan
        --divide --json`` prints it and ``StagePlan.from_dict`` reads it."""
        data = self.plan.to_dict()
        data["division"] = None if self.run is None or self.division is None else {
            "first": self.run[0], "last": self.run[1], "coordinator": self.coordinator,
            "hosts": list(self.division.workers), "row_bounds": list(self.division.bounds),
            "part_s": list(self.division.part_s), "undivided_total_s": self.undivided.total_s}
        return data


def candidate_runs(graph: Graph, max_nodes: int = 60) -> list[SpatialRun]:
    """Tileable runs from one point where a single tensor flows to another, at least two nodes
    long (a single node is the channel split's case), at most ``max_nodes``."""
    compute = [n.name for n in graph.compute_nodes]
    users = graph.consumers()
    position = {v: i for i, v in enumerate(compute)}
    last_read = {v: max((position.get(x, -1) for x in users[v]), default=-1) for v in compute}
    ends, reach = [], -1  # reach: the furthest position read from a node before position i
    for i, v in enumerate(compute):
        if reach <= i:
            ends.append(i)  # only v's own value may be read after it
        reach = max(reach, last_read[v])
    runs = []
    starts = [0] + [i + 1 for i in ends]
    for s in starts:
        for e in ends:
            if e - s + 1 < 2 or e - s + 1 > max_nodes:
                continue
            try:
                runs.append(SpatialRun(graph, compute[s], compute[e]))
            except DecomposeError:
                continue
    return runs


def _with_seconds(host: Host, seconds: Mapping[str, float]) -> Host:
    nodes = tuple(dataclasses.replace(n, latency_s=seconds[n.name]) if n.name in seconds else n
                  for n in host.profile.nodes)
    return dataclasses.replace(host, profile=dataclasses.replace(host.profile, nodes=nodes))


def plan_with_division(scenario: Scenario, graph: Graph, tier: str = "edge",
                       constraints: Constraints = Constraints(), max_parts: int | None = None,
                       method: str = "exact", tries: int | None = 5, max_nodes: int = 60,
                       min_gain: float = 0.05) -> DividedPlan:
    """The latency plan where one run of ``tier``'s nodes may be divided across its hosts.

    Every candidate run gets its best division alone (cheap), for each host of ``tier`` as
    the coordinator; the whole plan is then solved, per coordinator, for the ``tries`` runs
    whose division saves the most on its own (None: for every one, the exact optimum of this
    model over runs and cuts; the default is a heuristic, since the cut around a run rarely
    turns a smaller saving into the largest). Per coordinator, because the rest of the stage
    runs there: a slow host's run saves the most alone and may still lose to a fast host's.

    A division is kept only if it predicts at least ``min_gain`` (a fraction) less than the
    undivided plan: it brings more hosts and more transfers, each a chance for the prediction
    to miss, and a gain inside the model's error could measure as a loss."""
    scenario.tier_index(tier)
    hosts = scenario.hosts_of(tier)
    if not hosts:
        raise ScenarioError(f"tier {tier!r} has no host to divide a run across")
    undivided = solve(scenario, "latency", constraints)
    names = {n.name for n in scenario.hosts[0].profile.nodes}
    if set(graph.nodes) - set(graph.inputs) != names:
        raise ScenarioError(f"graph {graph.name!r} is not the graph the scenario's profiles "
                            "measured")
    options = []
    for run in candidate_runs(graph, max_nodes):
        costs = row_costs(run)
        for c in hosts:
            workers = [Worker(h.name, {v: h.profile.node(v).latency_s * h.load
                                       for v in run.names},
                              *((math.inf, 0.0) if h is c else
                                (scenario.link(c, h).bandwidth_bps,
                                 scenario.link(c, h).latency_s)))
                       for h in hosts]
            division = best_division(costs, workers, max_parts, method)
            alone = sum(workers[hosts.index(c)].seconds.values())
            if len(division.workers) > 1 and division.total_s < alone:
                options.append((alone - division.total_s, run, c, division, alone))
    best = DividedPlan(undivided, undivided)
    ranked = sorted(options, key=lambda o: -o[0])
    if tries is not None:
        ranked = [o for c in hosts for o in [o for o in ranked if o[2] is c][:tries]]
    for _, run, c, division, alone in ranked:
        scale = division.total_s / alone  # the run's nodes take the division's time in all
        seconds = {v: c.profile.node(v).latency_s * scale for v in run.names}
        divided = dataclasses.replace(scenario, hosts=tuple(
            _with_seconds(h, seconds) if h is c else h for h in scenario.hosts))
        pinned = dataclasses.replace(
            constraints, pin={**constraints.pin, **{v: tier for v in run.names}},
            never_hosts=(*constraints.never_hosts, *(h.name for h in hosts if h is not c)))
        try:
            p = solve(divided, "latency", pinned)
        except ScenarioError:
            continue
        if p.total_s < best.plan.total_s - 1e-12 and \
                p.total_s <= (1.0 - min_gain) * undivided.total_s:
            best = DividedPlan(p, undivided, (run.names[0], run.last), c.name, division,
                               row_costs(run))
    return best
