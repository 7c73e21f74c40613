"""Device placement by a discrete particle swarm, the cuts of each placement by DP.

The cooperative-inference recipe: a particle swarm searches placements and dynamic
programming partitions the model for each one it visits. A particle is a random-key vector of
2N numbers in [0, 1]: the first N order the nodes (by key), the second N say what each node
does in that order: below ``DROP`` it is left out, below ``JOIN`` it joins the group before
it as a replica, else it starts a new stage. Positions move by the standard update (inertia,
pull to the particle's best and to the swarm's) and the best placement found is polished by
a local search (move, drop or add one node at a time) until no single move helps.

The swarm starts from the placements worth trying first: the chain baseline's (so the search
never ends below it), every node in one replicated stage, one stage per node fastest first,
then random particles. Seeded with ``numpy.random.default_rng(seed)``: the same seed gives the
same plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cuts import Arrays, Group, best_cuts, path
from ..pipeline import INF

DROP, JOIN = 0.15, 0.45


@dataclass(frozen=True)
class SwarmSettings:
    particles: int = 16
    iterations: int = 30
    patience: int = 8  # iterations without a better placement before it stops
    inertia: float = 0.6
    pull_own: float = 1.4
    pull_best: float = 1.4
    polish_rounds: int = 4  # local-search rounds on the best placement


def decode(x: np.ndarray, allowed: Sequence[int]) -> tuple[Group, ...]:
    n = len(allowed)
    groups: list[list[int]] = []
    for i in np.argsort(x[:n], kind="stable"):
        role = x[n + i]
        if role < DROP:
            continue
        if role < JOIN and groups:
            groups[-1].append(allowed[i])
        else:
            groups.append([allowed[i]])
    return tuple(tuple(sorted(g)) for g in groups)


def encode(groups: Sequence[Group], allowed: Sequence[int]) -> np.ndarray:
    n = len(allowed)
    x = np.zeros(2 * n)
    x[n:] = DROP / 2
    slot = 0
    for g in groups:
        for k, node in enumerate(g):
            i = list(allowed).index(node)
            x[i] = (slot + 0.5) / n
            x[n + i] = (JOIN + 1) / 2 if k == 0 else (DROP + JOIN) / 2
            slot += 1
    x[:n][x[n:] < DROP] = np.linspace(0.9, 1.0, n)[x[n:] < DROP]
    return x


def solve(arrays: Arrays, allowed: Sequence[int], latency_cap: float | None = None,
          seed: int = 0, settings: SwarmSettings = SwarmSettings(),
          start: Sequence[Sequence[Group]] = ()) -> tuple[float, list[Group], list[int]]:
    rng = np.random.default_rng(seed)
    allowed = list(allowed)
    n = len(allowed)
    cache: dict[tuple[Group, ...], tuple[float, list[Group], list[int]]] = {}

    def cost(groups: tuple[Group, ...]) -> float:
        if not groups:
            return INF
        if groups not in cache:
            if len(groups) > arrays.model.m:
                cache[groups] = (INF, [], [])
            else:
                period, used, cuts = best_cuts(arrays, *path(groups), latency_cap)
                cache[groups] = (period, [groups[l] for l in used], cuts)
        return cache[groups][0]

    by_speed = sorted(allowed, key=lambda i: -arrays.model.speed[i])
    seeds = [*(tuple(tuple(sorted(g)) for g in s) for s in start), (tuple(sorted(allowed)),),
             tuple((i,) for i in by_speed)]
    size = max(settings.particles, len(seeds))
    pos = rng.random((size, 2 * n))
    for k, s in enumerate(seeds):
        pos[k] = encode(s, allowed)
    vel = (rng.random((size, 2 * n)) - 0.5) * 0.2
    own = pos.copy()
    own_cost = np.array([cost(decode(p, allowed)) for p in pos])
    best = int(np.argmin(own_cost))
    gpos, gcost = own[best].copy(), float(own_cost[best])
    stale = 0
    for _ in range(settings.iterations):
        r1, r2 = rng.random(pos.shape), rng.random(pos.shape)
        vel = (settings.inertia * vel + settings.pull_own * r1 * (own - pos)
               + settings.pull_best * r2 * (gpos - pos))
        vel = np.clip(vel, -0.3, 0.3)
        pos = np.clip(pos + vel, 0.0, 1.0)
        improved = False
        for k in range(size):
            c = cost(decode(pos[k], allowed))
            if c < own_cost[k]:
                own[k], own_cost[k] = pos[k], c
            if c < gcost * (1 - 1e-12):
                gpos, gcost, improved = pos[k].copy(), c, True
        stale = 0 if improved else stale + 1
        if stale >= settings.patience:
            break
    groups = decode(gpos, allowed)
    for _ in range(settings.polish_rounds):
        moves = [g for g in neighbours(groups, allowed) if len(g) <= arrays.model.m]
        costs = [cost(g) for g in moves]
        if not moves or min(costs) >= cost(groups) * (1 - 1e-12):
            break
        groups = moves[int(np.argmin(costs))]
    cost(groups)
    return cache[groups]


def neighbours(groups: tuple[Group, ...], allowed: Sequence[int]) -> list[tuple[Group, ...]]:
    """Placements one node away: a node dropped, moved into another stage or into a new stage
    at any position; an unused node added the same ways."""
    out = []
    used = {i for g in groups for i in g}
    for node in allowed:
        base = [tuple(i for i in g if i != node) for g in groups]
        if node in used:
            out.append(_clean(base))
        for j in range(len(base)):
            out.append(_clean([*base[:j], tuple(sorted((*base[j], node))), *base[j + 1:]]))
        for j in range(len(base) + 1):
            out.append(_clean([*base[:j], (node,), *base[j:]]))
    return [o for o in dict.fromkeys(out) if o and o != groups]


def _clean(groups: Sequence[Group]) -> tuple[Group, ...]:
    return tuple(tuple(g) for g in groups if g)
