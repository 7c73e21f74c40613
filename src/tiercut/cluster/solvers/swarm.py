"""Device placement by a discrete particle swarm, the cuts of each placement by DP.

The cooperative-inference recipe: a particle swarm searches placements and dynamic
programming partitions the model for each one it visits. A particle is a random-key vector of
2N numbers in [0, 1]: the first N order the nodes (by key), the second N say what each node
does in that order: below ``DROP`` it is left out, below ``JOIN`` it joins the group before
it as a replica, else it starts a new stage (one whose nodes divide each frame, ``Split``,
above ``SPLIT`` where the model prices divided stages). Positions move by the standard
update (inertia, pull to the particle's best and to the swarm's). The best placements found
are polished by a local search (move, drop, add or swap nodes, swap or merge adjacent
stages, switch a stage between replicas and dividing) until no single move helps, then kicked by a few random moves and polished again (iterated local
search). At most ``max_placements`` distinct placements are tried: the budget that keeps a
decision on 16 nodes under a second.

The swarm starts from the placements worth trying first: the chain baseline's (so the search
never ends below it), every node in one replicated stage, one stage per node fastest first,
the fastest node alone (the quickest frame, for tight latency caps), every node dealt into
k stages of about equal speed, then random particles. Seeded with
``numpy.random.default_rng(seed)``: the same seed gives the same plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cuts import Arrays, Group, best_cuts, path
from ..pipeline import INF, Split

DROP, JOIN, SPLIT = 0.15, 0.45, 0.85


@dataclass(frozen=True)
class SwarmSettings:
    particles: int = 16
    iterations: int = 30
    patience: int = 8  # iterations without a better placement before it stops
    inertia: float = 0.6
    pull_own: float = 1.4
    pull_best: float = 1.4
    polish_rounds: int = 40  # improving moves at most, per polished placement
    polish_starts: int = 3  # the best distinct placements found, polished each
    kicks: int = 16  # random restarts of the polish from the best placement
    kick_moves: int = 5
    max_placements: int = 2500  # distinct placements evaluated, at most
    balanced: int = 6  # seeds: all nodes in k = 2 .. this many stages of equal speed


def decode(x: np.ndarray, allowed: Sequence[int], divide: bool = False
           ) -> tuple[Group, ...]:
    n = len(allowed)
    groups: list[list[int]] = []
    divided: list[bool] = []
    for i in np.argsort(x[:n], kind="stable"):
        role = x[n + i]
        if role < DROP:
            continue
        if role < JOIN and groups:
            groups[-1].append(allowed[i])
        else:
            groups.append([allowed[i]])
            divided.append(divide and role >= SPLIT)
    return tuple(Split(sorted(g)) if d and len(g) > 1 else tuple(sorted(g))
                 for g, d in zip(groups, divided))


def balanced(by_speed: Sequence[int], k: int) -> tuple[Group, ...]:
    """Every node in k replicated stages of about equal total speed (dealt fastest first,
    back and forth)."""
    groups: list[list[int]] = [[] for _ in range(k)]
    for r, node in enumerate(by_speed):
        lap, j = divmod(r, k)
        groups[j if lap % 2 == 0 else k - 1 - j].append(node)
    return tuple(tuple(sorted(g)) for g in groups if g)


def encode(groups: Sequence[Group], allowed: Sequence[int]) -> np.ndarray:
    n = len(allowed)
    x = np.zeros(2 * n)
    x[n:] = DROP / 2
    slot = 0
    for g in groups:
        for k, node in enumerate(g):
            i = list(allowed).index(node)
            x[i] = (slot + 0.5) / n
            start = (SPLIT + 1) / 2 if isinstance(g, Split) else (JOIN + 1) / 2
            x[n + i] = start if k == 0 else (DROP + JOIN) / 2
            slot += 1
    x[:n][x[n:] < DROP] = np.linspace(0.9, 1.0, n)[x[n:] < DROP]
    return x


def solve(arrays: Arrays, allowed: Sequence[int], latency_cap: float | None = None,
          seed: int = 0, settings: SwarmSettings = SwarmSettings(),
          start: Sequence[Sequence[Group]] = ()) -> tuple[float, list[Group], list[int]]:
    rng = np.random.default_rng(seed)
    divide = arrays.model.divisions is not None
    allowed = list(allowed)
    n = len(allowed)
    cache: dict[tuple[Group, ...], float] = {}

    quick = not arrays.medium and latency_cap is None  # the period DP alone is exact
    exact: dict[tuple[Group, ...], float] = {}  # placements whose cost is known, not bounded
    known = [INF]  # the best of them

    def cost(groups: tuple[Group, ...]) -> float:
        if not groups:
            return INF
        if groups not in cache:
            if len(cache) >= settings.max_placements:
                return INF  # out of budget: nothing new is tried
            bound = arrays.bound(groups)
            if latency_cap is not None and arrays.quickest(groups) > latency_cap * (1 + 1e-12):
                bound = cache[groups] = INF  # no cuts bring a frame within the cap
            elif not quick and bound >= known[0]:
                cache[groups] = bound  # cannot beat the best known plan: its bound will do
            else:
                value = bound if quick else best_cuts(arrays, *path(groups), latency_cap)[0]
                cache[groups] = exact[groups] = value
                known[0] = min(known[0], value)
        return cache[groups]

    by_speed = sorted(allowed, key=lambda i: -arrays.model.speed[i])
    seeds = [*(tuple(tuple(sorted(g)) for g in s) for s in start), (tuple(sorted(allowed)),),
             tuple((i,) for i in by_speed), *(((i,),) for i in by_speed[:2]),
             *(balanced(by_speed, k) for k in range(2, min(n, settings.balanced) + 1))]
    size = max(settings.particles, len(seeds))
    pos = rng.random((size, 2 * n))
    for k, s in enumerate(seeds):
        pos[k] = encode(s, allowed)
    vel = (rng.random((size, 2 * n)) - 0.5) * 0.2
    own = pos.copy()
    own_cost = np.array([cost(decode(p, allowed, divide)) for p in pos])
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
            c = cost(decode(pos[k], allowed, divide))
            if c < own_cost[k]:
                own[k], own_cost[k] = pos[k], c
            if c < gcost * (1 - 1e-12):
                gpos, gcost, improved = pos[k].copy(), c, True
        stale = 0 if improved else stale + 1
        if stale >= settings.patience:
            break
    # polish the best distinct placements the particles found, then kick the best one by a
    # few random moves and polish again (iterated local search), keeping what improves
    ranked = sorted(dict.fromkeys(decode(p, allowed, divide) for p in own[np.argsort(own_cost)]),
                    key=cost)[:settings.polish_starts]
    top = min((polish(g, allowed, cost, rng, settings.polish_rounds, arrays.model.m, divide)
               for g in ranked), key=cost)
    for _ in range(settings.kicks):
        kicked = top
        for _ in range(settings.kick_moves):
            moves = neighbours(kicked, allowed, divide)
            kicked = moves[int(rng.integers(len(moves)))] if moves else kicked
        if len(kicked) > arrays.model.m:
            continue
        kicked = polish(kicked, allowed, cost, rng, settings.polish_rounds, arrays.model.m,
                        divide)
        if cost(kicked) < cost(top) * (1 - 1e-12):
            top = kicked
    if not exact:
        return INF, [], []
    best = min(exact, key=lambda g: (exact[g], len(g)))
    period, used, cuts = best_cuts(arrays, *path(best), latency_cap)
    return period, [best[l] for l in used], cuts


def polish(groups: tuple[Group, ...], allowed: Sequence[int], cost, rng, rounds: int,
           most_stages: int, divide: bool = False) -> tuple[Group, ...]:
    """First-improvement local search over ``neighbours``, in a random order."""
    for _ in range(rounds):
        moves = [g for g in neighbours(groups, allowed, divide) if len(g) <= most_stages]
        better = next((g for g in (moves[i] for i in rng.permutation(len(moves)))
                       if cost(g) < cost(groups) * (1 - 1e-12)), None)
        if better is None:
            break
        groups = better
    return groups


def neighbours(groups: tuple[Group, ...], allowed: Sequence[int], divide: bool = False
               ) -> list[tuple[Group, ...]]:
    """Placements one move away: a node dropped, moved into another stage or into a new stage
    at any position (an unused node added the same ways); two nodes swapped; two adjacent
    stages swapped or merged; with ``divide``, a stage of several nodes switched between
    replicas and dividing each frame."""
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
    where = {i: j for j, g in enumerate(groups) for i in g}
    for a in allowed:
        for b in allowed:
            if a < b and where.get(a, -1) != where.get(b, -1) and (a in where or b in where):
                swap = {a: b, b: a}
                out.append(_clean([tuple(sorted(swap.get(i, i) for i in g)) for g in groups]))
    for j in range(len(groups) - 1):
        out.append((*groups[:j], groups[j + 1], groups[j], *groups[j + 2:]))
        out.append((*groups[:j], tuple(sorted(groups[j] + groups[j + 1])), *groups[j + 2:]))
    if divide:
        for j, g in enumerate(groups):
            if len(g) > 1:
                other = tuple(g) if isinstance(g, Split) else Split(g)
                out.append((*groups[:j], other, *groups[j + 1:]))
    return [o for o in dict.fromkeys(out) if o and o != groups]


def _clean(groups: Sequence[Group]) -> tuple[Group, ...]:
    return tuple(tuple(g) for g in groups if g)
