"""Exact planning by one s–t minimum cut (Ishikawa's construction for ordered labels).

Each node v gets K-1 vertices v_1..v_{K-1}; v_j on the source side means label(v) >= j, so
label(v) is the number of its vertices on the source side. The arcs, and what cutting them
means:

* the chain s -> v_1 -> ... -> v_{K-1} -> t with capacities unary[v][0], .., unary[v][K-1]:
  a node whose vertices v_1..v_l are on the source side cuts exactly one of them, the one of
  capacity unary[v][l]; infinite reverse arcs v_{j+1} -> v_j keep the copies nested (no
  "label >= j+1" without "label >= j");
* data flows forward: an infinite arc u_j -> v_j for each edge u -> v forbids
  label(u) >= j > label(v);
* a tensor u crosses boundary j when label(u) < j <= label(v) for some consumer v: one
  auxiliary vertex w_{u,j}, infinite arcs v_j -> w_{u,j} from every consumer and one arc
  w_{u,j} -> u_j of capacity per_byte[j]·out_bytes[u], so the tensor pays once however many
  consumers are beyond the boundary (a tensor with one consumer needs no auxiliary vertex:
  the arc goes v_j -> u_j directly, as the reverse of the data-flow arc).

Data-flow arcs are kept only for the edges of the DAG's transitive reduction (the others
follow from them); the crossing arcs keep every consumer, which gives the flow short ways back
to the producers.

Every capacity is turned into an exact integer (every float is an integer times a power of
two, so one common power of two scales them all exactly), so the cut is exactly minimal for
the objective ``evaluate`` computes: min-cut and brute force agree to the last bit. Infinite
capacities become one integer larger than the sum of every finite one; a flow that reaches it
means no labelling is feasible.

The maximum flow: a few greedy sweeps over the graph in topological orders find most of it,
then Boykov–Kolmogorov (search trees grown from both terminals and reused between
augmentations) finishes it, on plain Python lists (both in ``maxflow``). The graph's arrays
depend only on the DAG and K, so they are built once and cached. DenseNet-121 (432 nodes): a
median 1.5-2 ms with 2 labels and 3-3.5 ms with 3 when the costs follow the nodes' FLOPs; with
costs drawn at random node by node, 2.5 and 7 ms (up to 10 and 25). networkx's minimum_cut
takes 40 and 100 ms.
"""
from __future__ import annotations

import math

import numpy as np

from .maxflow import bk_maxflow, sweep
from .problem import INF, Problem, evaluate


def solve(problem: Problem) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels); (inf, ()) when nothing is feasible. Same contract as brute.

    Needs per-byte costs and bytes >= 0 (a negative crossing cost is not a cut); unary costs
    may be any numbers or +inf.
    """
    n, k = len(problem.names), problem.labels
    for v, row in enumerate(problem.unary):
        if len(row) != k:
            raise ValueError(f"node {problem.names[v]!r} has {len(row)} unary costs for {k} "
                             "labels")
    unary = np.array(problem.unary, dtype=float).reshape(n, k)
    bad = np.isnan(unary) | (unary == -INF)
    if bad.any():
        v, label = np.argwhere(bad)[0]
        raise ValueError(f"unary cost of node {problem.names[v]!r} is {unary[v, label]!r}; "
                         "costs must be numbers, or +inf for forbidden")
    if (unary == INF).all(axis=1).any():
        return INF, ()
    if k <= 1 or n == 0:
        labels = (0,) * n
    else:
        found = _min_cut_labels(problem, unary)
        if found is None:
            return INF, ()
        labels = found
    cost = evaluate(problem, labels)
    return (cost, labels) if cost < INF else (INF, ())


class _Graph:
    """The cut graph of one DAG and label count, less its capacities.

    Vertex v*m + j-1 is v_j (m = K-1); auxiliary vertices come after. Arcs come in pairs
    (2e, 2e+1), each the other's reverse. ``cap[a]`` says where arc a's capacity comes from in
    the list ``[0, big] + unary (n·K, node by node) + transfer (n·m, node by node)``.
    ``sweeps`` holds, for each greedy sweep, the vertex order and each vertex's arcs going
    later in that order (out of it) and coming from earlier (into it).
    """

    __slots__ = ("nv", "head", "adj", "cap", "sweeps")

    def __init__(self, preds: list[list[int]], k: int):
        n, m = len(preds), k - 1
        users: list[list[int]] = [[] for _ in range(n)]
        for v, ps in enumerate(preds):
            for u in ps:
                users[u].append(v)
        below = [0] * n  # bit set of each node's descendants
        for v in range(n - 1, -1, -1):
            mask = 0
            for c in users[v]:
                mask |= (1 << c) | below[c]
            below[v] = mask
        zero, big, ubase, tbase = 0, 1, 2, 2 + n * k
        arcs: list[tuple[int, int, int, int]] = []  # (tail, head, capacity, reverse capacity)
        # Sweep orders: producers after consumers (crossing arcs point back), and the other
        # way (data-flow arcs point forward); in both, v_1 .. v_m in turn.
        back = [(-v, j) for v in range(n) for j in range(m)]
        forth = [(v, j) for v in range(n) for j in range(m)]
        nv = n * m
        for v in range(n):
            for j in range(1, m):  # v_j -> v_{j+1}: label(v) == j; back: keep copies nested
                arcs.append((v * m + j - 1, v * m + j, ubase + v * k + j, big))
        nchain = 2 * len(arcs)
        for u in range(n):
            us = users[u]
            if not us:
                continue
            reach = 0
            for c in us:
                reach |= below[c]
            direct = [v for v in us if not (reach >> v) & 1]  # transitive reduction
            for j in range(m):
                uj = u * m + j
                t = tbase + u * m + j
                if len(us) == 1:
                    arcs.append((uj, us[0] * m + j, big, t))
                    continue
                for v in direct:
                    arcs.append((uj, v * m + j, big, zero))
                w = nv
                nv += 1
                back.append((-min(us) + 0.5, j))  # after its consumers, before u
                forth.append((u - 0.5, j))
                for v in us:
                    arcs.append((v * m + j, w, big, zero))
                arcs.append((w, uj, t, zero))
        head: list[int] = []
        cap: list[int] = []
        adj: list[list[int]] = [[] for _ in range(nv)]
        for x, y, c, r in arcs:
            adj[x].append(len(head))
            adj[y].append(len(head) + 1)
            head += (y, x)
            cap += (c, r)
        self.nv, self.head, self.adj, self.cap = nv, head, adj, cap

        def sweep(rank: list[tuple[float, int]], chain_last: bool = False) -> tuple:
            order = sorted(range(nv), key=rank.__getitem__)
            pos = [0] * nv
            for i, x in enumerate(order):
                pos[x] = i
            outs = [[a for a in adj[x] if pos[head[a]] > pos[x]] for x in range(nv)]
            if chain_last:
                outs = [sorted(ax, key=lambda a: a < nchain) for ax in outs]
            ins = [[a ^ 1 for a in adj[x] if pos[head[a]] < pos[x]] for x in range(nv)]
            return order, outs, ins

        # Backward, moving up a node's chain first; backward, crossing arcs first (with 3 or
        # more labels the two differ: which tier's link carries the flow); forward.
        self.sweeps = [sweep(back)] + ([sweep(back, True)] if m > 1 else []) + [sweep(forth)]


_graphs: dict[tuple, _Graph] = {}


def _graph(problem: Problem) -> _Graph:
    """The cached graph of this problem's DAG and label count."""
    key = (problem.preds, problem.labels)
    g = _graphs.get(key)
    if g is None:
        preds = []
        for v, ps in enumerate(problem.preds):
            for u in ps:
                if not 0 <= u < v:
                    raise ValueError(f"node {problem.names[v]!r} reads node {u}, which does not "
                                     "come before it: nodes must be in topological order")
            preds.append(sorted(set(ps)))
        g = _Graph(preds, problem.labels)
        if len(_graphs) >= 32:
            del _graphs[next(iter(_graphs))]
        _graphs[key] = g
    return g


def _min_cut_labels(problem: Problem, unary: np.ndarray) -> tuple[int, ...] | None:
    n, k = unary.shape
    m = k - 1
    g = _graph(problem)
    # [u, j-1]: per_byte[j]·out_bytes[u], the very product evaluate adds up
    with np.errstate(over="ignore", invalid="ignore"):  # inf and nan are judged below
        transfer = np.outer(np.array(problem.out_bytes, dtype=float),
                            np.array(problem.per_byte[1:], dtype=float))
    bad = ~(transfer >= 0)  # nan too
    if bad.any():
        u, j = np.argwhere(bad)[0]
        raise ValueError(f"transfer cost of node {problem.names[u]!r} over boundary {j + 1} is "
                         f"{transfer[u, j]!r}; min-cut needs bytes and per-byte costs >= 0")
    costs = np.concatenate((unary.ravel(), transfer.ravel()))
    finite = costs < INF
    # Exact integers: every finite float times one power of two, 2**shift.
    mags = np.abs(costs[finite & (costs != 0)])
    if mags.size:
        shift = max(0, 53 - math.frexp(float(mags.min()))[1])
        fast = shift < 1000 and math.frexp(float(mags.max()))[1] + shift < 1000
    else:
        shift, fast = 0, True
    if fast:  # x * 2**shift is exact in floats: no overflow, and it is an integer
        ints = list(map(int, np.where(finite, costs * float(1 << shift), 0.0).tolist()))
    else:
        scale = 1 << shift

        def exact(x: float) -> int:
            p, q = x.as_integer_ratio()
            return p * (scale // q)

        ints = [exact(c) if c < INF else 0 for c in costs.tolist()]
    lows = unary.min(axis=1)
    for v in np.flatnonzero(lows < 0).tolist():  # shift negative rows to >= 0: a constant
        low = ints[v * k:v * k + k]
        low = min(c for c, f in zip(low, finite[v * k:v * k + k]) if f)
        for i in range(v * k, v * k + k):
            ints[i] -= low
    big = sum(c for c in ints if c > 0) + 1  # stands for infinity: more than any finite cut
    for i in np.flatnonzero(~finite).tolist():
        ints[i] = big
    values = [0, big] + ints
    rc = [values[i] for i in g.cap]
    tr = [0] * g.nv  # > 0: residual capacity s -> x; < 0: minus that of x -> t
    tr[0:n * m:m] = ints[0:n * k:k]
    sinks = ints[m:n * k:k]
    if m == 1:
        tr[0:n] = [a - b for a, b in zip(tr[0:n], sinks)]
    else:
        tr[m - 1:n * m:m] = [-b for b in sinks]

    flow = 0
    for order, outs, ins in g.sweeps:
        flow += sweep(g.nv, g.head, order, outs, ins, rc, tr)
    source = bk_maxflow(g.nv, g.adj, g.head, rc, tr, big, flow)
    if source is None:
        return None
    return tuple(sum(source[v * m:v * m + m]) for v in range(n))
