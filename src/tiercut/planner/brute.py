"""Brute force: every labelling that respects data flow. The reference the tests trust."""
from __future__ import annotations

from .problem import INF, Problem, Side, evaluate, side_violations


def solve(problem: Problem, side: Side | None = None) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels) among labellings that honour ``side``; (inf, ()) when nothing
    is feasible. Exponential: for tests and small references only."""
    n, k = len(problem.names), problem.labels
    best: list = [INF, ()]
    labels = [0] * n

    def extend(v: int) -> None:
        if v == n:
            cost = evaluate(problem, labels)
            if cost < best[0] and not (side and side_violations(problem, side, labels)):
                best[:] = [cost, tuple(labels)]
            return
        low = max((labels[u] for u in problem.preds[v]), default=0)
        for label in range(low, k):
            if problem.unary[v][label] < INF:
                labels[v] = label
                extend(v + 1)

    extend(0)
    return best[0], best[1]
