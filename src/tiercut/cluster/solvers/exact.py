"""Every ordered assignment of node groups to stages, with the cuts of each by DP: the
reference. Placements share their prefixes (a depth-first search carries the DP vector of the
stages placed so far), and a prefix whose slowest period already matches the best plan found
is not extended: a pipeline's period only grows as stages are added. With a shared medium,
the air time of the hops placed so far (each at its cheapest cut) bounds it too; with a
latency cap, a prefix whose quickest frame already takes longer than the cap is dropped.
Where the model prices divided stages, every group of two or more nodes is tried both ways
(replicas, and dividing each frame). The placements of N nodes number Σ_k C(N, k) ·
Fubini(k): 9,365 for 6 nodes, 1.1 million for 9 (more where groups may divide).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from ..cuts import SINK, SOURCE, Arrays, Group, best_cuts, path
from ..pipeline import INF, Split

MAX_NODES = 8


def solve(arrays: Arrays, allowed: Sequence[int], latency_cap: float | None = None,
          incumbent: tuple[float, list[Group], list[int]] | None = None
          ) -> tuple[float, list[Group], list[int]]:
    """``incumbent``: a plan already known (the chain baseline's), kept unless beaten; it
    only makes the pruning start sooner."""
    m = arrays.model.m
    best: list = list(incumbent) if incumbent and incumbent[1] else [INF, [], []]
    start = np.full(m + 1, INF)
    start[0] = 0.0
    capped = latency_cap is not None
    cap = latency_cap if capped else INF

    divide = arrays.model.divisions is not None

    def subsets(remaining: tuple[int, ...]):
        for size in range(len(remaining), 0, -1):
            for group in itertools.combinations(remaining, size):
                yield group
                if divide and size > 1:
                    yield Split(group)  # the same nodes dividing each frame

    def visit(groups: list[Group], f: np.ndarray, remaining: tuple[int, ...], air: float,
              lat: np.ndarray) -> None:
        last = groups[-1] if groups else SOURCE
        if groups:
            end = arrays.hop(last, SINK)
            bound = max(f[m], end[0][m], air + end[2][m])
            quickest = lat[m] + end[1][m]
            if bound < best[0] * (1 - 1e-12) and quickest <= cap * (1 + 1e-12):
                period, used, cuts = best_cuts(arrays, *path(groups), latency_cap)
                if period < best[0] * (1 - 1e-12):
                    best[:] = [period, [groups[l] for l in used], cuts]
        if max(f.min(), air) >= best[0] or lat.min() > cap or len(groups) >= m:
            return
        for group in subsets(remaining):
            period, latency, medium = arrays.hop(last, group)
            g = np.maximum(f, period)
            nxt = np.maximum(g[:, None], arrays.stage(group)[0]).min(axis=0)
            sooner = (lat + latency)[:, None] + arrays.stage(group)[1] if capped else lat
            rest = tuple(i for i in remaining if i not in group)
            visit([*groups, group], nxt, rest,
                  air + (medium[0] if not groups else medium[1:m].min()),
                  sooner.min(axis=0) if capped else lat)

    visit([], start, tuple(allowed), 0.0, start if capped else np.zeros(m + 1))
    return best[0], best[1], best[2]
