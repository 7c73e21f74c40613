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
  the arc goes v_j -> u_j directly).

Every capacity is turned into an exact integer (every float is an integer times a power of
two, so one common power of two scales them all exactly), so the cut is exactly minimal for
the objective ``evaluate`` computes: min-cut and brute force agree to the last bit. Infinite
capacities become one integer larger than the sum of every finite one; a flow that reaches it
means no labelling is feasible.

The maximum flow is Boykov–Kolmogorov's (search trees grown from both terminals and reused
between augmentations), on plain Python lists: about a millisecond or two for DenseNet-121's
432 nodes with 2 or 3 labels.
"""
from __future__ import annotations

import math
from collections import deque

from .problem import INF, Problem, evaluate

_TERMINAL = -1  # parent of a tree root (joined to its terminal directly)
_ORPHAN = -2  # parent of a node that has lost its path to the terminal
_NONE = -3  # parent of a free node


def solve(problem: Problem) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels); (inf, ()) when nothing is feasible. Same contract as brute."""
    n, k = len(problem.names), problem.labels
    unary = problem.unary
    for v in range(n):
        row = unary[v]
        if len(row) != k:
            raise ValueError(f"node {problem.names[v]!r} has {len(row)} unary costs for {k} "
                             "labels")
        if not any(c < INF for c in row):  # nan compares false too
            return INF, ()
    if k <= 1 or n == 0:
        labels = (0,) * n
        cost = evaluate(problem, labels)
        return (cost, labels) if cost < INF else (INF, ())
    labels = _min_cut_labels(problem)
    if labels is None:
        return INF, ()
    cost = evaluate(problem, labels)
    return (cost, labels) if cost < INF else (INF, ())


def _check(x: float, what: str) -> None:
    if math.isnan(x) or x == -INF:
        raise ValueError(f"{what} is {x!r}; costs must be numbers, or +inf for forbidden")


def _min_cut_labels(problem: Problem) -> tuple[int, ...] | None:
    n, k = len(problem.names), problem.labels
    m = k - 1  # vertices per node
    unary, per_byte, out_bytes = problem.unary, problem.per_byte, problem.out_bytes

    # Distinct producers of each node, distinct consumers of each tensor.
    preds = [sorted(set(ps)) for ps in problem.preds]
    users: list[list[int]] = [[] for _ in range(n)]
    for v, ps in enumerate(preds):
        for u in ps:
            if not 0 <= u < v:
                raise ValueError(f"node {problem.names[v]!r} reads node {u}, which does not "
                                 "come before it: nodes must be in topological order")
            users[u].append(v)

    # Every finite capacity, as a float, in one list; then all of them as exact integers.
    floats: list[float] = []
    for v in range(n):
        for c in unary[v]:
            _check(c, f"unary cost of node {problem.names[v]!r}")
            if c < INF:
                floats.append(c)
    transfer: list[list[float]] = []  # [u][j-1]: per_byte[j]·out_bytes[u]; 0 when u is unread
    for u in range(n):
        row = [0.0] * m
        if users[u]:
            ob = out_bytes[u]
            for j in range(1, k):
                c = per_byte[j] * ob  # the very product evaluate adds up
                _check(c, f"transfer cost of node {problem.names[u]!r} over boundary {j}")
                if c < 0:
                    raise ValueError(f"transfer cost of node {problem.names[u]!r} over boundary "
                                     f"{j} is negative ({c!r}); min-cut needs bytes and "
                                     "per-byte costs >= 0")
                if 0 < c < INF:
                    floats.append(c)
                row[j - 1] = c
        transfer.append(row)
    scale = _common_scale(floats)

    def exact(x: float) -> int:
        p, q = x.as_integer_ratio()
        return p * (scale // q)

    # Unary costs as integers, less each node's cheapest (a constant: the cut is the same).
    iunary: list[list[int | None]] = []
    total = 0
    for v in range(n):
        row = [exact(c) if c < INF else None for c in unary[v]]
        low = min(c for c in row if c is not None)
        row = [None if c is None else c - low for c in row]
        total += sum(c for c in row if c is not None)
        iunary.append(row)
    itransfer = [[exact(c) if 0 < c < INF else (-1 if c == INF else 0) for c in row]
                 for row in transfer]
    total += sum(c for row in itransfer for c in row if c > 0)
    big = total + 1  # stands for infinity: more than any cut of finite arcs

    # The graph: vertex v*m + (j-1) is v_j; auxiliary vertices after them. Arcs in pairs
    # (2e, 2e+1), each the other's reverse; tr[x] > 0 is the residual capacity s -> x,
    # tr[x] < 0 minus that of x -> t.
    nv = n * m
    head: list[int] = []
    rc: list[int] = []
    adj: list[list[int]] = [[] for _ in range(nv)]
    tr = [0] * nv

    def arc(x: int, y: int, cap: int, back: int) -> None:
        e = len(head)
        head.append(y)
        head.append(x)
        rc.append(cap)
        rc.append(back)
        adj[x].append(e)
        adj[y].append(e + 1)

    for v in range(n):
        row = iunary[v]
        base = v * m
        c0, ck = row[0], row[m]
        tr[base] += big if c0 is None else c0
        tr[base + m - 1] -= big if ck is None else ck
        for j in range(1, m):
            c = row[j]
            arc(base + j - 1, base + j, big if c is None else c, big)
    for u in range(n):
        us = users[u]
        if not us:
            continue
        row = itransfer[u]
        for j in range(m):
            uj = u * m + j
            c = row[j]
            c = big if c < 0 else c
            if len(us) == 1 or c == 0:
                for v in us:  # data flow u_j -> v_j; the crossing arc v_j -> u_j with it
                    arc(uj, v * m + j, big, c if len(us) == 1 else 0)
            else:
                w = nv
                nv += 1
                adj.append([])
                tr.append(0)
                for v in us:
                    arc(uj, v * m + j, big, 0)
                    arc(v * m + j, w, big, 0)
                arc(w, uj, c, 0)

    source = _bk_maxflow(nv, adj, head, rc, tr, big)
    if source is None:
        return None
    return tuple(sum(source[v * m:v * m + m]) for v in range(n))


def _common_scale(floats: list[float]) -> int:
    """The least power of two that makes every one of these floats an integer."""
    q = 1
    for x in floats:
        d = x.as_integer_ratio()[1]
        if d > q:
            q = d
    return q


def _bk_maxflow(nv: int, adj: list[list[int]], head: list[int], rc: list[int],
                tr: list[int], big: int) -> list[bool] | None:
    """Maximum flow by Boykov–Kolmogorov; the source side of a minimum cut, or None if the
    flow reaches ``big`` (every cut crosses an infinite arc).

    ``parent[x]`` is the arc from x to its parent in its tree (for both trees), so the flow
    runs along its reverse in the source tree and along it in the sink tree.
    """
    tree = [0] * nv  # 1: source tree, -1: sink tree, 0: free
    parent = [_NONE] * nv
    ts = [0] * nv  # time stamp and distance to the terminal, for choosing short parents
    dist = [0] * nv
    isactive = [False] * nv
    active: deque[int] = deque()
    for x in range(nv):
        t = tr[x]
        if t:
            tree[x] = 1 if t > 0 else -1
            parent[x] = _TERMINAL
            dist[x] = 1
            isactive[x] = True
            active.append(x)
    time = 0
    flow = 0
    orphans: deque[int] = deque()

    while active:
        i = active[0]
        ti = tree[i]
        if ti == 0:
            active.popleft()
            isactive[i] = False
            continue
        # Grow i's tree by one step; stop at the first arc into the other tree.
        mid = -1
        tsi, di = ts[i], dist[i]
        if ti == 1:
            for a in adj[i]:
                if rc[a]:
                    j = head[a]
                    tj = tree[j]
                    if tj == 0:
                        tree[j] = 1
                        parent[j] = a ^ 1
                        ts[j] = tsi
                        dist[j] = di + 1
                        if not isactive[j]:
                            isactive[j] = True
                            active.append(j)
                    elif tj < 0:
                        mid = a
                        break
                    elif ts[j] <= tsi and dist[j] > di:
                        parent[j] = a ^ 1
                        ts[j] = tsi
                        dist[j] = di + 1
        else:
            for a in adj[i]:
                b = a ^ 1
                if rc[b]:
                    j = head[a]
                    tj = tree[j]
                    if tj == 0:
                        tree[j] = -1
                        parent[j] = b
                        ts[j] = tsi
                        dist[j] = di + 1
                        if not isactive[j]:
                            isactive[j] = True
                            active.append(j)
                    elif tj > 0:
                        mid = b
                        break
                    elif ts[j] <= tsi and dist[j] > di:
                        parent[j] = b
                        ts[j] = tsi
                        dist[j] = di + 1
        if mid < 0:
            active.popleft()
            isactive[i] = False
            continue

        # Augment along source root .. tail(mid) -> head(mid) .. sink root.
        time += 1
        neck = rc[mid]
        x = head[mid ^ 1]
        p = parent[x]
        while p != _TERMINAL:
            c = rc[p ^ 1]
            if c < neck:
                neck = c
            x = head[p]
            p = parent[x]
        if tr[x] < neck:
            neck = tr[x]
        y = head[mid]
        p = parent[y]
        while p != _TERMINAL:
            c = rc[p]
            if c < neck:
                neck = c
            y = head[p]
            p = parent[y]
        if -tr[y] < neck:
            neck = -tr[y]
        rc[mid ^ 1] += neck
        rc[mid] -= neck
        x = head[mid ^ 1]
        p = parent[x]
        while p != _TERMINAL:
            rc[p] += neck
            rc[p ^ 1] -= neck
            if not rc[p ^ 1]:
                parent[x] = _ORPHAN
                orphans.append(x)
            x = head[p]
            p = parent[x]
        tr[x] -= neck
        if not tr[x]:
            parent[x] = _ORPHAN
            orphans.append(x)
        y = head[mid]
        p = parent[y]
        while p != _TERMINAL:
            rc[p ^ 1] += neck
            rc[p] -= neck
            if not rc[p]:
                parent[y] = _ORPHAN
                orphans.append(y)
            y = head[p]
            p = parent[y]
        tr[y] += neck
        if not tr[y]:
            parent[y] = _ORPHAN
            orphans.append(y)
        flow += neck
        if flow >= big:
            return None

        # Adopt the orphans: a new parent in the same tree, or free them.
        while orphans:
            i2 = orphans.popleft()
            side = tree[i2]
            best_d = -1
            best_a = _NONE
            for a0 in adj[i2]:
                if not (rc[a0 ^ 1] if side > 0 else rc[a0]):
                    continue
                j = head[a0]
                if tree[j] != side:
                    continue
                # Does j still reach the terminal? Count the steps.
                d = 0
                z = j
                while True:
                    if ts[z] == time:
                        d += dist[z]
                        break
                    pz = parent[z]
                    d += 1
                    if pz == _TERMINAL:
                        ts[z] = time
                        dist[z] = 1
                        break
                    if pz == _ORPHAN:
                        d = -1
                        break
                    z = head[pz]
                if d >= 0:
                    if best_d < 0 or d < best_d:
                        best_a = a0
                        best_d = d
                    z = j
                    while ts[z] != time:
                        ts[z] = time
                        dist[z] = d
                        d -= 1
                        z = head[parent[z]]
            if best_a != _NONE:
                parent[i2] = best_a
                ts[i2] = time
                dist[i2] = best_d + 1
                continue
            tree[i2] = 0
            parent[i2] = _NONE
            for a0 in adj[i2]:
                j = head[a0]
                if tree[j] != side:
                    continue
                if (rc[a0 ^ 1] if side > 0 else rc[a0]) and not isactive[j]:
                    isactive[j] = True
                    active.append(j)
                pj = parent[j]
                if pj >= 0 and head[pj] == i2:
                    parent[j] = _ORPHAN
                    orphans.append(j)
    return [t > 0 for t in tree]
