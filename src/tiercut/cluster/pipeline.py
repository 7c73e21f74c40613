"""The throughput cost model of a pipeline placed on a cluster.

A plan is a sequence of stages; stage j runs the compute nodes between two cuts (positions in
the graph's topological order) on a *group* of nodes that hold it as replicas, taking frames
in turn. Frames arrive at the source, cross hop 0 to the first stage, hop j between stages j
and j+1, and hop k from the last stage to the sink. What crosses a cut is every tensor made
before it and read after it (a model output counts as read at the end), each once.

Replicas. Node i of a group takes the share w_i = s_i / Σ s of the frames, s_i being its
speed on the whole model (1 / its whole-model seconds), fixed per group, so its busy time per
frame is w_i · t_i(stage) and the stage's period is max_i w_i · t_i. Where profiles are scaled
copies of one another, that is 1 / Σ (1 / t_i), the best any split of the frames can do.

Per frame, and per unit of time when the pipeline runs at its period P:

  stage j      period max_i w_i t_i          latency max_i t_i   (a frame's worst replica)
  hop, u -> v  period w_u w_v · 8 B / r_uv   latency max_{u,v} (8 B / r_uv + d_uv)
  medium       period Σ_hops Σ_{u,v on it} w_u w_v · 8 B / r_medium (all transfers split it)

where t_i includes, for a node with ``wire_s_per_byte`` c_i, c_i times the bytes coming into
the stage and going out of it (a node's processor moves its frames as well as computing them).

Throughput is 1 / max(every period); the latency of a frame is the sum of the stage and hop
latencies (a node sends to itself for free). Memory: every node of a group holds its stage's
weights and its peak of live activations (the tensors crossing into or alive inside it).

Divided stages. Where a ``Divisions`` is attached (``Model.divisions``), a group marked
``Split`` runs each frame divided by rows across its nodes instead (``divide.py``): its
period and latency are the divided stage's seconds, frames enter and leave at its
coordinator, and its energy is its parts' compute.

Cuts. ``cuts="single"`` allows a cut only where one tensor crosses (between blocks: few cut
positions, fast); ``cuts="all"`` at every topological position, with all crossing tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..measure.profile import Profile
from .scenario import Cluster, ClusterError

INF = math.inf


class Split(tuple):
    """A group of nodes that divides each frame of its stage by rows (``divide.py``) rather
    than taking frames in turn: the same nodes, another label, so it hashes apart from the
    replica group of the same nodes."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is Split and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(("split", tuple(self)))

    def __repr__(self) -> str:
        return f"Split{tuple.__repr__(self)}"


@dataclass(frozen=True)
class Model:
    """The cluster and one graph, as arrays indexed by candidate cut (0 .. m)."""

    nodes: tuple[str, ...]  # cluster node names, in the cluster's order
    positions: tuple[int, ...]  # topological position of each candidate cut (0 and n included)
    crossing: np.ndarray  # (m+1,) bytes crossing each candidate cut
    tensors: tuple[tuple[str, ...], ...]  # what crosses each candidate cut
    seconds: np.ndarray  # (N, m+1, m+1) stage seconds on each node, inf where a >= c
    memory: np.ndarray  # (m+1, m+1) bytes a node needs to hold [a, c)
    speed: np.ndarray  # (N,) 1 / whole-model seconds
    caps: np.ndarray  # (N,) memory cap, inf where none
    power_w: np.ndarray  # (N,)
    per_byte: np.ndarray  # (N, N) transfer seconds per byte, 0 on the diagonal
    delay: np.ndarray  # (N, N) one-way delay, 0 on the diagonal
    shared: np.ndarray  # (N, N) seconds per byte on the medium, 0 off it
    source: int
    sink: int
    model: str
    node_names: tuple[str, ...]  # the graph's compute nodes
    divisions: Any = None  # divide.Divisions: the priced divided stages; None: replicas only

    @property
    def m(self) -> int:
        return len(self.positions) - 1


def cost_model(cluster: Cluster, reference: Profile | None = None, cuts: str = "single"
               ) -> Model:
    profiles = cluster.profiles(reference)
    if reference is not None:
        some = next(iter(profiles.values()))
        if reference.signature() != some.signature():
            raise ClusterError(f"the model {reference.model!r} ({len(reference.nodes)} nodes) "
                               f"is not the graph the cluster's nodes profile ({some.model!r}, "
                               f"{len(some.nodes)} nodes)")
    names = cluster.names
    ref = profiles[names[0]]
    order = [n.name for n in ref.nodes]
    n = len(order)
    pos = {v: i for i, v in enumerate(order)}
    sizes = {v.name: v.output_bytes for v in ref.nodes}
    inputs = {m.name: m.bytes for m in ref.inputs}
    last = {}  # tensor -> last position reading it (n for model outputs)
    for i, v in enumerate(ref.nodes):
        for s in v.inputs or ("",):
            last[s] = max(last.get(s, -1), i)
    for out in ref.outputs:
        last[out] = n
    made = {t: (pos[t] if t in pos else -1) for t in last}

    def cut_tensors(c: int) -> tuple[str, ...]:
        return tuple(t for t in last if made[t] < c <= last[t])

    def size(t: str) -> int:
        return sizes[t] if t in sizes else inputs.get(t, ref.input_bytes if t == "" else 0)

    if cuts not in ("single", "all"):
        raise ClusterError(f"cuts {cuts!r}: accepted single, all")
    every = [cut_tensors(c) for c in range(n + 1)]
    keep = [c for c in range(n + 1) if c in (0, n) or cuts == "all" or len(every[c]) == 1]
    crossing = np.array([float(sum(size(t) for t in every[c])) for c in keep])
    # memory of [a, c): weights + the peak of live bytes at any node inside it
    params = np.concatenate([[0.0], np.cumsum([v.param_bytes for v in ref.nodes])])
    live = np.array([sum(size(t) for t in every[i]) + sizes[order[i]] for i in range(n)])
    k = len(keep)
    memory = np.full((k, k), INF)
    for ai, a in enumerate(keep):
        peak = np.maximum.accumulate(live[a:]) if a < n else np.array([])
        for ci in range(ai + 1, k):
            c = keep[ci]
            memory[ai, ci] = params[c] - params[a] + peak[c - a - 1]
    seconds = np.full((len(names), k, k), INF)
    speed = np.zeros(len(names))
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    for i, name in enumerate(names):
        lat = np.array(exact_cumsum([v.latency_s for v in profiles[name].nodes]))[keep]
        seconds[i][upper] = (lat[None, :] - lat[:, None])[upper]
        wire = cluster.node(name).wire_s_per_byte  # what comes in and what goes out
        if wire:
            seconds[i][upper] += (wire * (crossing[:, None] + crossing[None, :]))[upper]
        total = lat[-1]
        speed[i] = 1.0 / total if total > 0 else 1e12
    per_byte, delay, shared = (np.zeros((len(names),) * 2) for _ in range(3))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            link = cluster.link(a, b)
            if link is not None:
                per_byte[i, j], delay[i, j] = 8.0 / link.bandwidth_bps, link.latency_s
                if cluster.medium is not None and cluster.medium.carries(a, b):
                    shared[i, j] = 8.0 / cluster.medium.rate_bps
    nodes = cluster.nodes
    return Model(names, tuple(keep), crossing, tuple(every[c] for c in keep), seconds, memory,
                 speed, np.array([INF if x.memory_bytes is None else float(x.memory_bytes)
                                  for x in nodes]),
                 np.array([float(x.power_w) for x in nodes]), per_byte, delay, shared,
                 names.index(cluster.source), names.index(cluster.sink), ref.model,
                 tuple(order))


def exact_cumsum(values: Sequence[float]) -> list[float]:
    """Prefix sums, exactly rounded (math.fsum) so every solver sees the same seconds."""
    out, acc = [0.0], []
    for v in values:
        acc.append(v)
        out.append(math.fsum(acc))
    return out


def shares(model: Model, group: Sequence[int]) -> np.ndarray:
    s = model.speed[list(group)]
    return s / s.sum()


def entry(model: Model, group: Sequence[int]) -> dict[int, float]:
    """Where a group's frames arrive and leave, with each node's share of them: every node by
    its share for replicas, the coordinator alone for a divided stage."""
    if isinstance(group, Split):
        return {model.divisions.coordinator(group): 1.0}
    return dict(zip(group, shares(model, group)))


@dataclass(frozen=True)
class Evaluation:
    """Every figure of one plan (groups, cuts) under the model; inf periods where it breaks a
    memory cap."""

    stage_period: tuple[float, ...]
    stage_latency: tuple[float, ...]
    hop_period: tuple[float, ...]  # k + 1 hops: source -> first stage, ..., last -> sink
    hop_latency: tuple[float, ...]
    hop_bytes: tuple[float, ...]
    medium_s: float
    energy_j: float  # per frame, compute only
    fits: bool

    @property
    def period(self) -> float:
        return max((*self.stage_period, *self.hop_period, self.medium_s))

    @property
    def latency(self) -> float:
        return math.fsum((*self.stage_latency, *self.hop_latency))


def hop(model: Model, senders: Mapping[int, float], receivers: Mapping[int, float],
        nbytes: float) -> tuple[float, float, float]:
    """(period, latency, medium seconds) of one frame's tensors crossing between two groups."""
    period = latency = medium = 0.0
    for u, wu in senders.items():
        for v, wv in receivers.items():
            if u == v:
                continue
            period = max(period, wu * wv * nbytes * model.per_byte[u, v])
            latency = max(latency, nbytes * model.per_byte[u, v] + model.delay[u, v])
            medium += wu * wv * nbytes * model.shared[u, v]
    return period, latency, medium


def evaluate(model: Model, groups: Sequence[Sequence[int]], cuts: Sequence[int]) -> Evaluation:
    """``cuts``: candidate-cut indices 0 = c_0 < c_1 < ... < c_k = m, one stage per group."""
    if len(cuts) != len(groups) + 1 or cuts[0] != 0 or cuts[-1] != model.m \
            or any(a >= b for a, b in zip(cuts, cuts[1:])):
        raise ClusterError(f"cuts {list(cuts)} do not give {len(groups)} non-empty stages "
                           f"over 0..{model.m}")
    sp, sl, energy, fits = [], [], [], True
    ends = [{model.source: 1.0}]
    for g, a, c in zip(groups, cuts, cuts[1:]):
        if isinstance(g, Split) and model.divisions is None:
            raise ClusterError(f"group {g} divides its stage, but no graph was given to "
                               "divide it by (plan_cluster's divide=)")
        fits = fits and bool(model.memory[a, c] <= model.caps[list(g)].min())
        ends.append(entry(model, g))
        if isinstance(g, Split):
            t = float(model.divisions.latency(g)[a, c])
            sp.append(t)
            sl.append(t)
            energy.append(model.divisions.detail(g, a, c).energy_j if t < INF else INF)
            continue
        w = shares(model, g)
        t = model.seconds[list(g), a, c]
        sp.append(float(np.max(w * t)))
        sl.append(float(np.max(t)))
        energy.append(float(np.sum(w * t * model.power_w[list(g)])))
    ends.append({model.sink: 1.0})
    hp, hl, hb, med = [], [], [], []
    for j in range(len(groups) + 1):
        nbytes = float(model.crossing[cuts[j]])
        p, lat, m = hop(model, ends[j], ends[j + 1], nbytes)
        hp.append(p)
        hl.append(lat)
        hb.append(nbytes)
        med.append(m)
    if not fits:
        sp = [INF] * len(sp)
    return Evaluation(tuple(sp), tuple(sl), tuple(hp), tuple(hl), tuple(hb), math.fsum(med),
                      math.fsum(energy), fits)
