"""Brute force: every labelling that respects data flow. The reference the tests trust."""
from __future__ import annotations

from typing import Callable, Sequence

from .problem import INF, Problem, Side, evaluate, side_violations, stage_times


def solve(problem: Problem, side: Side | None = None,
          cost: Callable[[Sequence[int]], float] | None = None) -> tuple[float, tuple[int, ...]]:
    """(best cost, labels) among labellings that honour ``side``; (inf, ()) when nothing is
    feasible. ``cost`` defaults to the problem's objective. Exponential: tests and small
    references only."""
    n, k = len(problem.names), problem.labels
    cost = cost or (lambda labels: evaluate(problem, labels))
    best: list = [INF, ()]
    labels = [0] * n

    def extend(v: int) -> None:
        if v == n:
            value = cost(labels)
            if value < best[0] and not (side and side_violations(problem, side, labels)):
                best[:] = [value, tuple(labels)]
            return
        low = max((labels[u] for u in problem.preds[v]), default=0)
        for label in range(low, k):
            if problem.unary[v][label] < INF:
                labels[v] = label
                extend(v + 1)

    extend(0)
    return best[0], best[1]


def solve_bottleneck(problem: Problem, side: Side) -> tuple[float, tuple[int, ...]]:
    """The labelling with the shortest slowest stage (the best throughput)."""
    return solve(problem, side, lambda labels: max(stage_times(problem, side, labels)))
