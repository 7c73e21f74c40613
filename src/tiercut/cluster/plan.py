"""ClusterPlan: the stages, the nodes holding each, the cuts and the predicted figures.

Plain data that can be printed, saved and compared; ``describe`` turns a solver's groups and
cuts into one, through the same ``evaluate`` every solver is judged by.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .pipeline import Model, Split, entry, evaluate


@dataclass(frozen=True)
class Stage:
    nodes: tuple[str, ...]  # the cluster nodes holding it
    # "single" (one node), "replicas" (frames taken in turn, by share) or "divided" (each
    # frame's run divided by rows across the nodes, ``division``)
    mode: str
    shares: tuple[float, ...]  # of the frames, per node (a divided stage's: its coordinator)
    first: str  # the stage's first and last compute node of the graph
    last: str
    n_graph_nodes: int
    period_s: float  # busy seconds per frame of its busiest replica
    latency_s: float  # a frame's seconds on its slowest replica
    utilisation: float  # period_s / the pipeline's period
    memory_bytes: int  # weights and peak activations a node needs to hold it
    bytes_in: int  # what crosses into it per frame
    tensors_in: tuple[str, ...]
    # a divided stage's run: {"first", "last", "coordinator", "hosts" (row order),
    # "row_bounds", "part_s"}; None otherwise
    division: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClusterPlan:
    model: str
    method: str
    stages: tuple[Stage, ...]
    cuts: tuple[int, ...]  # topological positions: stage j runs nodes cuts[j] .. cuts[j+1]-1
    throughput_fps: float
    period_s: float
    latency_s: float
    bottleneck: str  # "stage 2", "hop 1 (a -> b)", "medium"
    hop_period_s: tuple[float, ...]
    hop_bytes: tuple[int, ...]
    medium_s: float
    energy_j: float  # compute energy per frame
    source: str
    sink: str

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        return tuple(s.nodes for s in self.stages)

    def summary(self) -> str:
        parts = " | ".join(f"{('/' if s.mode == 'divided' else '+').join(s.nodes)}"
                          f"[{s.first}..{s.last}]" for s in self.stages)
        return (f"{self.throughput_fps:.2f} frames/s, latency {self.latency_s * 1e3:.1f} ms, "
                f"bottleneck {self.bottleneck}: {parts}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = [{**asdict(s), "nodes": list(s.nodes), "shares": list(s.shares),
                           "tensors_in": list(s.tensors_in)} for s in self.stages]
        for key in ("cuts", "hop_period_s", "hop_bytes"):
            data[key] = list(data[key])
        return data


def describe(model: Model, groups: Sequence[Sequence[int]], cuts: Sequence[int], method: str
             ) -> ClusterPlan:
    ev = evaluate(model, groups, cuts)
    period = ev.period
    names = model.node_names
    stages = []
    for j, (g, a, c) in enumerate(zip(groups, cuts, cuts[1:])):
        first, last = model.positions[a], model.positions[c]
        where = entry(model, g)
        division = _division(model, g, a, c) if isinstance(g, Split) else None
        stages.append(Stage(
            tuple(model.nodes[i] for i in g),
            "divided" if division else "single" if len(g) == 1 else "replicas",
            tuple(float(where.get(i, 0.0)) for i in g), names[first], names[last - 1],
            last - first, ev.stage_period[j], ev.stage_latency[j],
            ev.stage_period[j] / period if period > 0 else 0.0, int(model.memory[a, c]),
            int(model.crossing[a]), model.tensors[a], division))
    ends = [model.nodes[model.source], *("+".join(s.nodes) for s in stages),
            model.nodes[model.sink]]
    terms = [(p, f"stage {j + 1}") for j, p in enumerate(ev.stage_period)]
    terms += [(p, f"hop {j} ({ends[j]} -> {ends[j + 1]})") for j, p in enumerate(ev.hop_period)]
    terms.append((ev.medium_s, "medium"))
    bottleneck = max(terms, key=lambda t: t[0])[1]
    return ClusterPlan(model.model, method, tuple(stages),
                       tuple(model.positions[c] for c in cuts),
                       1.0 / period if period > 0 else float("inf"), period, ev.latency,
                       bottleneck, ev.hop_period, tuple(int(b) for b in ev.hop_bytes),
                       ev.medium_s, ev.energy_j, model.nodes[model.source],
                       model.nodes[model.sink])


def _division(model: Model, group: Split, a: int, c: int) -> dict[str, Any]:
    d = model.divisions.detail(group, a, c)
    return {"first": d.run[0], "last": d.run[1], "coordinator": model.nodes[d.coordinator],
            "hosts": [model.nodes[i] for i in d.hosts], "row_bounds": list(d.bounds),
            "part_s": list(d.part_s)}
