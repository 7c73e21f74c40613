"""A stage with one run divided across peer tier servers (StagePlan.division): the stage's
nodes before the run (a sub-stage), the run through FanOut, the nodes after; the sub-stages
come from graph.split on a finer assignment of the same graph (stage j -> 3j; within the
divided stage k: before the run -> 3k, the run -> 3k+1, after -> 3k+2)."""
from __future__ import annotations

import threading
from typing import Any

import torch

from ..graph.dag import Graph
from ..graph.split import Stage, split
from .fanout import FanOut
from .stageplan import LOCAL_PEER, Layout, StagePlan
from .stageplan import _empty_stage as empty_stage


class _DividedModule(torch.nn.Module):
    """Stage k with one run fanned out to peers: the nodes before the run, the run through
    FanOut (made on first use), the nodes after; the same values as the undivided stage."""

    def __init__(self, plan: StagePlan, graph: Graph, stage: Stage) -> None:
        super().__init__()
        d, k = plan.division_of(stage.index), stage.index
        position = {n.name: i for i, n in enumerate(graph.compute_nodes)}
        i, j = position[d["first"]], position[d["last"]]
        fine = {}
        for node, s in plan.assignment.items():
            if s != k:
                fine[node] = 3 * s
            else:  # before the run, the run, after it
                fine[node] = 3 * k + (0 if position[node] < i else 1 if position[node] <= j else 2)
        subs = split(graph, fine)
        subs += [empty_stage(graph, m) for m in range(len(subs), 3 * k + 3)]
        self.before, self.after = subs[3 * k], subs[3 * k + 2]
        self.run_stage = subs[3 * k + 1]
        self.inputs, self.outputs = stage.inputs, stage.outputs
        self.plan, self.division = plan, d
        self._fanout: Any = None
        self._parts: Any = None
        self._lock = threading.Lock()

    def _fan(self) -> Any:
        with self._lock:
            if self._fanout is None:
                d = self.division
                peers = [p for p in dict.fromkeys(d["peers"]) if p != LOCAL_PEER]
                fan = FanOut(peers, self.plan.model, d["first"], d["last"],
                             batch=self.plan.batch)
                self._parts = fan.spatial.row_parts(d["bounds"])
                self._fanout = fan
            return self._fanout

    def forward(self, *args: Any) -> tuple:
        env: dict[str, Any] = dict(zip(self.inputs, args))
        env.update(self.before.run(env))
        fan = self._fan()
        y, _ = fan.run(env[fan.spatial.source], self._parts, list(self.division["peers"]))
        env[fan.spatial.last] = y
        env.update(self.after.run(env))
        return tuple(env[o] for o in self.outputs)


def divided_stage(plan: StagePlan, lay: Layout, k: int) -> Stage:
    """Stage k of ``lay`` with the plan's division fanned out (the torch backend's stage)."""
    stage = lay.stages[k]
    return Stage(stage.index, _DividedModule(plan, lay.graph, stage), stage.nodes,
                 stage.inputs, stage.outputs)
