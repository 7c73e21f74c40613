"""Brute force: every labelling that respects data flow. The reference the tests trust."""
from __future__ import annotations

from .problem import INF, Problem, evaluate


def solve(problem: Problem) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels); (inf, ()) when nothing is feasible. Exponential: tests only."""
    n, k = len(problem.names), problem.labels
    best: list = [INF, ()]
    labels = [0] * n

    def extend(v: int) -> None:
        if v == n:
            cost = evaluate(problem, labels)
            if cost < best[0]:
                best[:] = [cost, tuple(labels)]
            return
        low = max((labels[u] for u in problem.preds[v]), default=0)
        for label in range(low, k):
            if problem.unary[v][label] < INF:
                labels[v] = label
                extend(v + 1)

    extend(0)
    return best[0], best[1]
