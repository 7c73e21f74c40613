"""The planning problem for one route, as plain arrays every algorithm reads.

A route is the chain of tiers the data passes through (the device first) and the host serving
each. Each node gets a label: its position in the route. Data flows forward only: a node's
label is never below its inputs'. A tensor crosses boundary i (between route positions i-1 and
i) when its producer is below i and some consumer is at or above i; it crosses once however
many consumers it has there. With that, every linear objective (latency, device energy) is

    Σ_v unary[v][label(v)] + Σ_i per_byte[i] · Σ_{u crossing i} bytes(u) + constant

which is what min-cut, dynamic programming, the integer program and brute force all minimise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

INF = math.inf


@dataclass(frozen=True)
class Route:
    tiers: tuple[int, ...]  # tier indices in order; tiers[0] == 0, the device
    hosts: tuple[str, ...]  # the host serving each


@dataclass(frozen=True)
class Problem:
    names: tuple[str, ...]  # model inputs first, then the graph's nodes in topological order
    preds: tuple[tuple[int, ...], ...]  # indices of the nodes each one reads
    out_bytes: tuple[float, ...]
    unary: tuple[tuple[float, ...], ...]  # [node][label]: compute and return cost; inf = forbidden
    per_byte: tuple[float, ...]  # [boundary] cost of one byte crossing; per_byte[0] unused (0)
    constant: float  # what the route costs whatever the labels (hop latencies)
    n_inputs: int = 1  # the first n_inputs nodes are the model's inputs, pinned to label 0

    @property
    def labels(self) -> int:
        return len(self.per_byte)

    def consumers(self) -> list[list[int]]:
        users: list[list[int]] = [[] for _ in self.names]
        for v, ps in enumerate(self.preds):
            for u in ps:
                users[u].append(v)
        return users


def crossing(problem: Problem, labels: Sequence[int]) -> list[list[int]]:
    """For each boundary i, the tensors (node indices) that cross it."""
    top = list(labels)  # highest label among a node's consumers (itself if none)
    for v, ps in enumerate(problem.preds):
        for u in ps:
            top[u] = max(top[u], labels[v])
    return [[u for u in range(len(labels)) if labels[u] < i <= top[u]]
            for i in range(problem.labels)]


def evaluate(problem: Problem, labels: Sequence[int]) -> float:
    """The objective of one labelling; inf when it is forbidden or sends data backward."""
    for v, ps in enumerate(problem.preds):
        if any(labels[u] > labels[v] for u in ps):
            return INF
    terms = [problem.unary[v][labels[v]] for v in range(len(labels))]
    for i, tensors in enumerate(crossing(problem, labels)):
        terms.extend(problem.per_byte[i] * problem.out_bytes[u] for u in tensors)
    terms.append(problem.constant)
    return math.fsum(terms)  # exactly rounded, so every algorithm agrees on the same total


@dataclass(frozen=True)
class Side:
    """Constraints min-cut cannot carry, in the route's terms (labels and boundaries)."""

    compute_s: tuple[tuple[float, ...], ...]  # [node][label] compute seconds (load included)
    param_bytes: tuple[float, ...]  # [node]
    max_bytes: tuple[tuple[int, float], ...] = ()  # (boundary, bytes crossing it at most)
    max_seconds: tuple[tuple[int, float], ...] = ()  # (label, compute seconds at most)
    max_share: tuple[tuple[int, float], ...] = ()  # (label, fraction of the objective at most)
    max_memory: tuple[tuple[int, float], ...] = ()  # (label, bytes: see memory_use)
    min_nodes: tuple[int, ...] = ()  # labels that must run at least one (non-input) node
    # For the throughput objective: the reply's seconds per byte on each boundary, and which
    # nodes are returned (empty when the reply is not counted).
    back_per_byte: tuple[float, ...] = ()
    returned: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.max_bytes or self.max_seconds or self.max_share or self.max_memory
                    or self.min_nodes)


def side_violations(problem: Problem, side: Side, labels: Sequence[int]) -> list[str]:
    """What a labelling breaks, in words; [] when it honours every side constraint."""
    broken = []
    cross = crossing(problem, labels)
    for boundary, cap in side.max_bytes:
        sent = sum(problem.out_bytes[u] for u in cross[boundary])
        if sent > cap * (1 + 1e-12):
            broken.append(f"boundary {boundary} carries {sent:.0f} bytes > {cap:.0f}")
    seconds = [0.0] * problem.labels
    count = [0] * problem.labels
    for v in range(problem.n_inputs, len(labels)):
        label = labels[v]
        seconds[label] += side.compute_s[v][label]
        count[label] += 1
    memory = memory_use(problem, side, labels) if side.max_memory else []
    total = evaluate(problem, labels)
    for label, cap in side.max_seconds:
        if seconds[label] > cap * (1 + 1e-12):
            broken.append(f"label {label} computes {seconds[label]:.6g} s > {cap:.6g} s")
    for label, share in side.max_share:
        if seconds[label] > share * total * (1 + 1e-12):
            broken.append(f"label {label} computes {seconds[label]:.6g} s, more than {share:.1%} "
                          f"of the total {total:.6g} s")
    for label, cap in side.max_memory:
        if memory[label] > cap * (1 + 1e-12):
            broken.append(f"label {label} needs {memory[label]:.0f} bytes > {cap:.0f}")
    for label in side.min_nodes:
        if count[label] == 0:
            broken.append(f"label {label} runs no node")
    return broken



def memory_use(problem: Problem, side: Side, labels: Sequence[int]) -> list[float]:
    """Bytes each label holds for one request: the parameters of its nodes, every tensor its
    nodes produce (model inputs on theirs) and every tensor it receives from below. That is
    everything the stage ever holds, so it bounds the peak of parameters plus live
    activations from above whatever order the stage runs in: a cap on it is safe."""
    memory = [0.0] * problem.labels
    received = [set() for _ in range(problem.labels)]
    for v, ps in enumerate(problem.preds):
        memory[labels[v]] += side.param_bytes[v] + problem.out_bytes[v]
        for u in ps:
            if labels[u] < labels[v]:
                received[labels[v]].add(u)
    for label, tensors in enumerate(received):
        memory[label] += sum(problem.out_bytes[u] for u in tensors)
    return memory


def stage_times(problem: Problem, side: Side, labels: Sequence[int]) -> list[float]:
    """Seconds each pipeline stage spends per request: every label's compute, every boundary's
    forward transfer, and (when the reply is counted) every boundary's return transfer.

    A stream of requests runs at most one request per max(stage_times) seconds (DADS's
    heavy-load mode, multi-device pipelines).
    """
    compute = [0.0] * problem.labels
    for v in range(problem.n_inputs, len(labels)):
        compute[labels[v]] += side.compute_s[v][labels[v]]
    forward = [problem.per_byte[i] * sum(problem.out_bytes[u] for u in tensors)
               for i, tensors in enumerate(crossing(problem, labels)) if i > 0]
    back = [side.back_per_byte[i] * sum(problem.out_bytes[u] for u in side.returned
                                        if labels[u] >= i)
            for i in range(1, len(side.back_per_byte))]
    return compute + forward + back
