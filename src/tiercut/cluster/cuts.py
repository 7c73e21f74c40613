"""Where to cut, once it is decided which groups hold the stages: dynamic programming.

The labels are groups of nodes in a DAG of allowed successions: a path for one placement
(group 1, then 2, ...), or every increasing subsequence of the nodes for the chain baseline.
``f_l[c]`` is the best value of a pipeline whose last stage is label l and ends at cut c:

    f_l[c] = min over predecessors h and cuts a < c of  f_h[a] (+) hop_{h,l}(a) (+) stage_l(a, c)

with (+) = max for the slowest period (every term but the medium), exact in O(L · m²) per
edge with numpy. The shared medium and the latency of a frame are *sums* over hops and
stages, which a min-max recursion cannot carry; for those, ``best_cuts`` searches the period
threshold T over the finite set of values a stage or hop period can take: with every period
held to at most T, a min-sum recursion gives the least medium time (or latency), and the
smallest T whose plan keeps the medium within T (and the latency within the cap) is the
optimum. With only a medium or only a latency cap this is exact; with both it keeps the
better of the least-latency and least-medium plans at each T (a heuristic, rarely off).
"""
from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from .pipeline import INF, Model, Split, entry, evaluate, shares

Group = tuple[int, ...]
SOURCE, SINK = ("source",), ("sink",)
PREFIXES = 200_000  # placement prefixes whose DP vector is kept


class Arrays:
    """Stage and hop arrays of one model, made once per group or pair of groups."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.medium = bool(model.shared.any())
        self._stage: dict[Group, tuple[np.ndarray, np.ndarray]] = {}
        self._hop: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._prefix: dict[tuple[Group, ...], np.ndarray] = {}  # DP vectors, for ``bound``
        self._coef: dict[tuple, tuple[float, float]] = {}

    def stage(self, group: Group) -> tuple[np.ndarray, np.ndarray]:
        """(period, latency) of [a, c) on ``group``: (m+1, m+1), inf where not allowed."""
        if group not in self._stage and isinstance(group, Split):
            latency = self.model.divisions.latency(group)
            self._stage[group] = (latency, latency)  # one frame at a time: period = latency
        if group not in self._stage:
            m, g = self.model, list(group)
            t = m.seconds[g]
            period = np.max(shares(m, g)[:, None, None] * t, axis=0)
            latency = np.max(t, axis=0)
            full = m.memory > m.caps[g].min()
            period[full] = INF
            latency[full] = INF
            self._stage[group] = (period, latency)
        return self._stage[group]

    def _ends(self, end: tuple) -> tuple[list[int], np.ndarray]:
        if end == SOURCE:
            return [self.model.source], np.ones(1)
        if end == SINK:
            return [self.model.sink], np.ones(1)
        where = entry(self.model, end)
        return list(where), np.array(list(where.values()))

    def hop(self, a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(period, latency, medium) vectors over the cut a hop from a to b crosses."""
        key = (a, b)
        if key not in self._hop:
            m, x = self.model, self.model.crossing
            us, vs = self._ends(a)[0], self._ends(b)[0]
            per_byte = m.per_byte[us][:, vs]  # 0 where u == v: nothing crosses
            moves = per_byte > 0
            delay = m.delay[us][:, vs][moves]
            latency = (np.max(per_byte[moves][:, None] * x + delay[:, None], axis=0)
                       if moves.any() else np.zeros_like(x))
            period, medium = self._coefficients(a, b)
            self._hop[key] = (period * x, latency, medium * x)
        return self._hop[key]

    def _coefficients(self, a: tuple, b: tuple) -> tuple[float, float]:
        """Seconds per byte crossing from a to b: of the busiest link, and of the medium."""
        key = (a, b)
        if key not in self._coef:
            m = self.model
            (us, wu), (vs, wv) = self._ends(a), self._ends(b)
            weight = np.outer(wu, wv)
            self._coef[key] = (float((weight * m.per_byte[us][:, vs]).max()),
                               float((weight * m.shared[us][:, vs]).sum()))
        return self._coef[key]

    def bound(self, groups: Sequence[Group]) -> float:
        """The slowest period of the best cuts for one placement, the medium and the latency
        left out: exact without them, a lower bound with them."""
        m = self.model.m
        if len(groups) > m:
            return INF
        groups = tuple(groups)
        j = len(groups)
        while j and groups[:j] not in self._prefix:  # the longest prefix already solved
            j -= 1
        if j:
            f = self._prefix[groups[:j]]
        else:
            f = np.full(m + 1, INF)
            f[0] = 0.0
        last = groups[j - 1] if j else SOURCE
        for i in range(j, len(groups)):
            g = groups[i]
            link = self._coefficients(last, g)[0] * self.model.crossing
            f = np.maximum(np.maximum(f, link)[:, None], self.stage(g)[0]).min(axis=0)
            if len(self._prefix) < PREFIXES:
                self._prefix[groups[:i + 1]] = f
            last = g
        return float(max(f[m], self._coefficients(last, SINK)[0] * self.model.crossing[m]))

    def quickest(self, groups: Sequence[Group]) -> float:
        """The least latency of a frame over every choice of cuts for one placement."""
        m = self.model.m
        f = np.full(m + 1, INF)
        f[0] = 0.0
        last = SOURCE
        for g in groups:
            f = ((f + self.hop(last, g)[1])[:, None] + self.stage(g)[1]).min(axis=0)
            last = g
        return float(f[m] + self.hop(last, SINK)[1][m])


def run(arrays: Arrays, labels: Sequence[Group], preds: Sequence[Sequence[int]],
        ends: Sequence[int], kind: str = "max", limit: float = INF
        ) -> tuple[float, list[int], list[int]]:
    """The best pipeline over the label DAG: (value, labels used, cuts). ``preds[l]`` lists
    the labels that may come before l (-1: l may be first); ``kind``: "max" (the slowest
    period), "latency" or "medium" (sums, with every period held to at most ``limit``)."""
    m = arrays.model.m
    comb = np.maximum if kind == "max" else np.add
    start = np.full(m + 1, INF)
    start[0] = 0.0
    f, back = [], []
    cols = np.arange(m + 1)
    for l, group in enumerate(labels):
        g, garg = np.full(m + 1, INF), np.full(m + 1, -2)
        for h in preds[l]:
            vec = comb(start if h == -1 else f[h],
                       _pick(arrays.hop(SOURCE if h == -1 else labels[h], group), kind, limit))
            better = vec < g
            g, garg = np.where(better, vec, g), np.where(better, h, garg)
        table = comb(g[:, None], _pick(arrays.stage(group), kind, limit))
        a = np.argmin(table, axis=0)
        f.append(table[a, cols])
        back.append((garg, a))
    best, last = INF, -1
    for l in ends:
        value = float(comb(f[l][m], _pick(arrays.hop(labels[l], SINK), kind, limit)[m]))
        if value < best:
            best, last = value, l
    if last < 0 or best == INF:
        return INF, [], []
    used, cuts, l, c = [], [m], last, m
    while True:
        garg, a = back[l]
        used.append(l)
        c = int(a[c])
        cuts.append(c)
        h = int(garg[c])
        if h == -1:
            break
        l = h
    return best, used[::-1], cuts[::-1]


def _pick(arrays: tuple[np.ndarray, ...], kind: str, limit: float) -> np.ndarray:
    period = arrays[0]
    if kind == "max":
        return period
    value = arrays[1] if kind == "latency" else (arrays[2] if len(arrays) > 2
                                                 else np.zeros_like(period))
    return np.where(period <= limit, value, INF)


def best_cuts(arrays: Arrays, labels: Sequence[Group], preds: Sequence[Sequence[int]],
              ends: Sequence[int], latency_cap: float | None = None
              ) -> tuple[float, list[int], list[int]]:
    """(period, labels used, cuts) of the fastest pipeline over the label DAG whose latency
    is within the cap; (inf, [], []) when none is."""
    model = arrays.model
    value, used, cuts = run(arrays, labels, preds, ends)
    if not used:
        return INF, [], []
    if not arrays.medium and latency_cap is None:
        return value, used, cuts  # the slowest period is all there is: the DP is exact
    seen: list[tuple[float, float, list[int], list[int]]] = []

    def keep(used: list[int], cuts: list[int]) -> tuple[float, float] | None:
        if not used:
            return None
        ev = evaluate(model, [labels[l] for l in used], cuts)
        if latency_cap is not None and ev.latency > latency_cap * (1 + 1e-12):
            return None
        seen.append((ev.period, ev.latency, used, cuts))
        return ev.period, ev.latency

    got = keep(used, cuts)
    if got is not None and got[0] <= value * (1 + 1e-12):
        return got[0], used, cuts  # the lower bound is reached: nothing can beat it
    values = [value]
    for l, group in enumerate(labels):
        values.append(arrays.stage(group)[0].ravel())
        for h in preds[l]:
            values.append(arrays.hop(SOURCE if h == -1 else labels[h], group)[0])
        if l in ends:
            values.append(arrays.hop(group, SINK)[0])
    cand = np.unique(np.concatenate([np.atleast_1d(v) for v in values]))
    cand = cand[np.isfinite(cand) & (cand >= value)]

    def ok(i: int) -> bool:
        t, good = float(cand[i]), False
        for kind in (("medium",) if arrays.medium else ()) + (("latency",) if latency_cap
                                                               is not None else ()):
            _, u, c = run(arrays, labels, preds, ends, kind, t)
            got = keep(u, c)
            good = good or (got is not None and got[0] <= t * (1 + 1e-12))
        return good

    i = bisect.bisect_left(range(len(cand)), True, key=ok) if len(cand) else 0
    if 0 < i <= len(cand):
        ok(i - 1)  # the plan just below the threshold may win on its medium time
    if not seen:
        return INF, [], []
    period, _, used, cuts = min(seen, key=lambda s: (s[0], s[1]))
    return period, used, cuts


def path(groups: Sequence[Group]) -> tuple[list[Group], list[list[int]], list[int]]:
    """The label DAG of one placement: the groups in order, each after the one before."""
    return list(groups), [[l - 1] for l in range(len(groups))], [len(groups) - 1]
