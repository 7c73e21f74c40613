"""The placement-blind baseline (PipeEdge's partitioning): the nodes in the order the
cluster lists them, one node per stage, any of them skipped; the DP chooses which to use and
where to cut. Everything it can reach is a placement the full planner searches too.
"""
from __future__ import annotations

from typing import Sequence

from ..cuts import Arrays, Group, best_cuts


def solve(arrays: Arrays, allowed: Sequence[int], latency_cap: float | None = None
          ) -> tuple[float, list[Group], list[int]]:
    labels = [(i,) for i in sorted(allowed)]
    preds = [[-1, *range(l)] for l in range(len(labels))]
    period, used, cuts = best_cuts(arrays, labels, preds, list(range(len(labels))), latency_cap)
    return period, [labels[l] for l in used], cuts
