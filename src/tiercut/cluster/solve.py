"""``plan_cluster``: the fastest pipeline over a cluster, by one of three searches; and
``marginal_nodes``: whether more nodes really make it faster.

Methods. ``exact`` tries every ordered assignment of node groups to stages (at most
``exact.MAX_NODES`` nodes); ``swarm`` searches placements by particle swarm, starting from
the chain baseline's, and returns the better of its plan and the baseline's, so it is never
slower than ``chain`` by construction; ``chain`` is that baseline (the nodes in the given
order, one per stage, some skipped). All three cut by the same DP and are judged by the same
``pipeline.evaluate``. Stages are held by one node or by replicas, and with ``divide=`` (the
traced graph) also by nodes that divide each frame by rows (``divide.py``): that shortens a
frame more than it raises throughput, which replicas raise without halos or a gather, so it
is what a tight latency cap chooses. The chain baseline never divides.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..graph.dag import Graph
from ..measure.profile import Profile
from .cuts import Arrays, Group
from .divide import Divisions
from .pipeline import INF, Model, cost_model
from .plan import ClusterPlan, describe
from .scenario import Cluster, ClusterError
from .solvers import chain, exact, swarm
from .solvers.swarm import SwarmSettings

METHODS = ("exact", "swarm", "chain")


def plan_cluster(cluster: Cluster, model: Graph | Profile | None = None, method: str = "exact",
                 latency_cap_s: float | None = None, seed: int = 0, cuts: str = "single",
                 nodes: Sequence[str] | None = None,
                 settings: SwarmSettings = SwarmSettings(), divide: Graph | None = None
                 ) -> ClusterPlan:
    """The plan of most frames per second. ``model``: a Profile is the reference that nodes
    given by ``speed`` scale; a Graph is checked against the nodes' profiles. ``nodes``: the
    nodes that may compute (all when None); the source and sink take part either way.
    ``divide``: the model's graph, to let a stage's nodes divide each frame by rows."""
    costs, arrays = _prepare(cluster, model, cuts, divide)
    allowed = _allowed(costs, nodes)
    period, groups, where = search(arrays, allowed, method, latency_cap_s, seed, settings)
    if period == INF:
        raise _refusal(cluster, costs, arrays, allowed, latency_cap_s)
    return describe(costs, groups, where, method)


def search(arrays: Arrays, allowed: Sequence[int], method: str, latency_cap_s: float | None,
           seed: int = 0, settings: SwarmSettings = SwarmSettings()
           ) -> tuple[float, list[Group], list[int]]:
    if method not in METHODS:
        raise ClusterError(f"method {method!r}: accepted {', '.join(METHODS)}")
    if latency_cap_s is not None and not latency_cap_s > 0:
        raise ClusterError(f"latency cap must be > 0 s, got {latency_cap_s!r}")
    if method == "exact":
        if len(allowed) > exact.MAX_NODES:
            raise ClusterError(f"exact tries every placement of {len(allowed)} nodes, too many "
                               f"(at most {exact.MAX_NODES}); use method='swarm'")
    base = chain.solve(arrays, allowed, latency_cap_s)
    if method == "exact":
        return exact.solve(arrays, allowed, latency_cap_s, incumbent=base)
    if method == "chain":
        return base
    found = swarm.solve(arrays, allowed, latency_cap_s, seed, settings,
                        start=[base[1]] if base[1] else ())
    return found if found[0] <= base[0] else base


def _prepare(cluster: Cluster, model: Graph | Profile | None, cuts: str,
             divide: Graph | None = None) -> tuple[Model, Arrays]:
    reference = model if isinstance(model, Profile) else None
    costs = cost_model(cluster, reference, cuts)
    for graph in (model, divide):
        if isinstance(graph, Graph):
            names = [n.name for n in graph.compute_nodes]
            if tuple(names) != costs.node_names:
                raise ClusterError(f"graph {graph.name!r} ({len(names)} nodes) is not the graph "
                                   f"the cluster's nodes profile ({costs.model!r}, "
                                   f"{len(costs.node_names)} nodes)")
    if divide is not None:
        divisions = Divisions(costs, divide, cluster.profiles(reference),
                              [n.wire_s_per_byte for n in cluster.nodes])
        costs = dataclasses.replace(costs, divisions=divisions)
    return costs, Arrays(costs)


def _allowed(costs: Model, nodes: Sequence[str] | None) -> list[int]:
    if nodes is None:
        return list(range(len(costs.nodes)))
    for name in nodes:
        if name not in costs.nodes:
            raise ClusterError(f"unknown node {name!r}; nodes are {list(costs.nodes)}")
    if not nodes:
        raise ClusterError("no node may compute: give at least one")
    return sorted(costs.nodes.index(n) for n in set(nodes))


def least_memory(costs: Model, stages: int) -> float:
    """The least memory every node needs for some plan of at most ``stages`` stages: a
    min-max partition of the weights and activations, by DP over the cuts."""
    m = costs.m
    f = np.full(m + 1, INF)
    f[0] = 0.0
    best = INF
    for _ in range(min(stages, m)):
        f = np.maximum(f[:, None], costs.memory).min(axis=0)
        best = min(best, f[m])
    return float(best)


def _refusal(cluster: Cluster, costs: Model, arrays: Arrays, allowed: Sequence[int],
             cap: float | None) -> ClusterError:
    free = search(arrays, allowed, "chain", None)[0] if cap is not None else INF
    if cap is None or free == INF:
        need = least_memory(costs, len(allowed))
        largest = max(allowed, key=lambda i: costs.caps[i])
        return ClusterError(
            f"no placement of {costs.model!r} fits the memory caps: with {len(allowed)} nodes "
            f"each must hold at least {need / 1e6:.1f} MB ({int(need)} bytes), but the largest "
            f"cap is node {costs.nodes[largest]!r}'s {costs.caps[largest] / 1e6:.1f} MB; raise "
            "a cap or add nodes")
    best = _least_latency(arrays, allowed)
    return ClusterError(f"no plan of {costs.model!r} meets the latency cap {cap * 1e3:.2f} ms; "
                        f"the quickest frame tiercut found takes {best * 1e3:.2f} ms: raise the "
                        "cap to at least that")


def _least_latency(arrays: Arrays, allowed: Sequence[int]) -> float:
    from .cuts import run

    labels = [(i,) for i in sorted(allowed)]
    best = INF
    for order in (labels, labels[::-1]):
        preds = [[-1, *range(l)] for l in range(len(order))]
        best = min(best, run(arrays, order, preds, list(range(len(order))), "latency")[0])
    return best


@dataclass(frozen=True)
class Marginal:
    k: int
    nodes: tuple[str, ...]  # the k fastest nodes (on the whole model)
    throughput_fps: float
    gain: float  # over k - 1 nodes (1.0 for k = 1)
    helps: bool  # the k-th node raised throughput by more than 1 %
    plan: ClusterPlan


def marginal_nodes(cluster: Cluster, model: Graph | Profile | None = None,
                   method: str = "swarm", latency_cap_s: float | None = None, seed: int = 0,
                   cuts: str = "single", nodes: Sequence[str] | None = None,
                   divide: Graph | None = None) -> list[Marginal]:
    """For k = 1 .. N: the best plan on the k fastest nodes (of ``nodes``, the ones that may
    compute; all when None), and whether the k-th helped.

    Each set holds the one before, and every planner may leave a node out, so the figures
    only grow; a node that adds nothing (its link too slow, the bottleneck elsewhere) shows
    as ``helps=False``."""
    costs, arrays = _prepare(cluster, model, cuts, divide)
    ranked = sorted(_allowed(costs, nodes), key=lambda i: (-costs.speed[i], i))
    out: list[Marginal] = []
    previous = None
    for k in range(1, len(ranked) + 1):
        allowed = sorted(ranked[:k])
        method_k = "swarm" if method == "exact" and k > exact.MAX_NODES else method
        found = search(arrays, allowed, method_k, latency_cap_s, seed)
        if previous is not None and previous[0] < found[0]:
            found = previous  # k - 1 nodes are a placement of k nodes too
        if found[0] == INF:
            raise _refusal(cluster, costs, arrays, allowed, latency_cap_s)
        plan = describe(costs, found[1], found[2], method_k)
        gain = 1.0 if not out else plan.throughput_fps / out[-1].throughput_fps
        out.append(Marginal(k, tuple(costs.nodes[i] for i in allowed), plan.throughput_fps,
                            gain, k > 1 and gain > 1.01, plan))
        previous = found
    return out
