"""A general s–t maximum flow over plain integer arrays; it knows nothing of plans or labels.

The graph: vertices 0..nv-1 and arcs in pairs (2e, 2e+1), each the other's reverse, so
``a ^ 1`` is arc a's reverse. ``head[a]`` is the vertex arc a points to, ``adj[x]`` the arcs
out of x, ``rc[a]`` arc a's residual capacity. The terminals are not vertices: ``tr[x] > 0``
is the residual capacity s -> x and ``tr[x] < 0`` minus that of x -> t. Both functions update
``rc`` and ``tr`` in place, so ``sweep`` can find part of the flow and ``bk_maxflow`` finish
it. Capacities are Python ints, so the flow is exact however large they are.
"""
from __future__ import annotations

from collections import deque

_TERMINAL = -1  # parent of a tree root (joined to its terminal directly)
_ORPHAN = -2  # parent of a node that has lost its path to the terminal
_NONE = -3  # parent of a free node


def sweep(nv: int, head: list[int], order: list[int], outs: list[list[int]],
          ins: list[list[int]], rc: list[int], tr: list[int]) -> int:
    """Add a quick greedy flow to ``rc`` and ``tr``; return its value.

    One pass in ``order``: each vertex takes what the source offers it, gives what it can to
    the sink, and pushes the rest on along its arcs to later vertices. What gets stuck is then
    sent back the way it came, last vertices first, so that a flow (not a preflow) is left.
    ``outs[x]`` are x's arcs to vertices later in ``order``, ``ins[x]`` the arcs into x from
    earlier ones.
    """
    excess = [0] * nv
    taken = [0] * nv
    pushed = [0] * len(head)
    flow = 0
    for x in order:
        e = excess[x]
        t = tr[x]
        if t > 0:
            taken[x] = t
            e += t
            tr[x] = 0
        elif t < 0 and e:
            d = e if e < -t else -t
            tr[x] = t + d
            flow += d
            e -= d
        if e:
            for a in outs[x]:
                r = rc[a]
                if r:
                    d = e if e < r else r
                    rc[a] = r - d
                    rc[a ^ 1] += d
                    pushed[a] += d
                    excess[head[a]] += d
                    e -= d
                    if not e:
                        break
        excess[x] = e
    for x in reversed(order):
        e = excess[x]
        if not e:
            continue
        d = taken[x]
        if d:
            d = e if e < d else d
            tr[x] += d
            e -= d
        if e:
            for a in ins[x]:
                f = pushed[a]
                if f:
                    d = e if e < f else f
                    pushed[a] = f - d
                    rc[a] += d
                    rc[a ^ 1] -= d
                    excess[head[a ^ 1]] += d
                    e -= d
                    if not e:
                        break
    return flow


def bk_maxflow(nv: int, adj: list[list[int]], head: list[int], rc: list[int],
               tr: list[int], big: int, flow: int = 0) -> list[bool] | None:
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
    if flow >= big:
        return None
    time = 0
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
