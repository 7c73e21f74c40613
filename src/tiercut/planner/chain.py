"""Dynamic programming for chains (Neurosurgeon, Scission): each node reads the one before.

Labels never decrease along a chain, so the best labelling ending at node v with label l
extends the best one at v-1 with some label l' <= l, paying for v-1's output to cross the
boundaries l'+1..l. O(n·K²).
"""
from __future__ import annotations

from .problem import INF, Problem, evaluate


def is_chain(problem: Problem) -> bool:
    """True when node k (after the inputs) reads exactly node k-1, and the first reads inputs."""
    first = problem.n_inputs
    if first >= len(problem.names):
        return False
    if set(problem.preds[first]) != set(range(first)):
        return False
    users = [0] * len(problem.names)
    for ps in problem.preds:
        for u in ps:
            users[u] += 1
    return all(problem.preds[v] == (v - 1,) for v in range(first + 1, len(problem.names))) and all(
        users[v] == 1 for v in range(first, len(problem.names) - 1))


def solve(problem: Problem, required: tuple[int, ...] = ()) -> tuple[float, tuple[int, ...]]:
    """``required``: labels that must run at least one node. Labels never decrease along a
    chain, so a label is used unless a step jumps over it: such steps are simply not taken."""
    k, first, n = problem.labels, problem.n_inputs, len(problem.names)
    need = set(required)

    def allowed(low: int, high: int) -> bool:  # may labels strictly between low and high be empty?
        return not any(low < r < high for r in need)

    # The first node reads every model input: they cross the boundaries below its label.
    entering = sum(problem.out_bytes[u] for u in range(first))
    best = [_crossing(problem, entering, 0, l) + problem.unary[first][l]
            if allowed(-1, l) else INF for l in range(k)]
    back: list[list[int]] = [[0] * k]
    for v in range(first + 1, n):
        size = problem.out_bytes[v - 1]
        new, arg = [], []
        for l in range(k):
            cost, lp = min(((best[lp] + _crossing(problem, size, lp, l) if allowed(lp, l) else INF),
                            lp) for lp in range(l + 1))
            new.append(cost + problem.unary[v][l])
            arg.append(lp)
        back.append(arg)
        best = new
    last = min((l for l in range(k) if l >= max(need, default=0)), key=lambda l: best[l])
    if best[last] == INF:
        return INF, ()
    labels = [0] * n
    labels[n - 1] = last
    for v in range(n - 1, first, -1):
        labels[v - 1] = back[v - first][labels[v]]
    return evaluate(problem, labels), tuple(labels)


def _crossing(problem: Problem, size: float, low: int, high: int) -> float:
    return sum(problem.per_byte[i] * size for i in range(low + 1, high + 1))
