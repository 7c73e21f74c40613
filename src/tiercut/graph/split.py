"""Graph surgery: an assignment of nodes to ordered stages becomes one module per stage.

The decision (which node goes where) is made elsewhere; this module only applies it. Each
stage is an fx GraphModule whose positional inputs and tuple of outputs are named values of
the graph: the tensors that cross between stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch.fx as fx

from ..errors import AssignmentError
from .capture_fixes import restructure
from .dag import INPUT_OP, Graph


@dataclass(frozen=True)
class Stage:
    index: int
    module: fx.GraphModule
    nodes: tuple[str, ...]  # graph nodes computed here, in order
    inputs: tuple[str, ...]  # values read from the model input or earlier stages
    outputs: tuple[str, ...]  # values later stages or the model's output need

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """Run on the values in ``env``; return this stage's outputs by name."""
        missing = [name for name in self.inputs if name not in env]
        if missing:
            raise AssignmentError(f"stage {self.index} is missing its inputs {missing}")
        results = self.module(*(env[name] for name in self.inputs))
        return dict(zip(self.outputs, results))


def check_assignment(graph: Graph, assignment: Mapping[str, int]) -> dict[str, int]:
    """Validate ``assignment`` (node -> stage) and return it completed with the model inputs.

    Model inputs live on stage 0, where the request starts.
    """
    compute = [n.name for n in graph.compute_nodes]
    unknown = sorted(set(assignment) - set(graph.nodes))
    if unknown:
        raise AssignmentError(f"assignment names unknown nodes {unknown[:5]}; the graph's nodes "
                              f"are e.g. {compute[:5]}")
    missing = [name for name in compute if name not in assignment]
    if missing:
        raise AssignmentError(f"assignment leaves {len(missing)} nodes without a stage, "
                              f"e.g. {missing[:5]}")
    full = {name: 0 for name in graph.inputs}
    for name in compute:
        stage = assignment[name]
        if isinstance(stage, bool) or not isinstance(stage, int) or stage < 0:
            raise AssignmentError(f"node {name!r} has stage {stage!r}; stages are integers >= 0")
        full[name] = stage
    for node in graph.compute_nodes:
        for src in node.inputs:
            if full[src] > full[node.name]:
                raise AssignmentError(
                    f"edge {src} -> {node.name} sends data backward: {src!r} is on stage "
                    f"{full[src]} but {node.name!r} reads it on stage {full[node.name]}; a node's "
                    "stage must not come before its inputs' stages"
                )
    return full


def split(graph: Graph, assignment: Mapping[str, int]) -> list[Stage]:
    """One Stage per stage index 0..max, empty stages included (they pass nothing)."""
    if graph.module is None:
        raise AssignmentError(f"graph {graph.name!r} has no module to split (it was loaded "
                              "from a profile); trace the model to split it")
    gm: fx.GraphModule = graph.module
    fx_nodes = {n.name: n for n in gm.graph.nodes}
    return [Stage(k, _stage_module(gm, fx_nodes, names, inputs, outputs,
                                   f"{graph.name}_stage{k}"), names, inputs, outputs)
            for k, (names, inputs, outputs) in enumerate(stage_parts(graph, assignment))]


def stage_parts(graph: Graph, assignment: Mapping[str, int]
                ) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """Per stage index 0..max (empty stages included): the nodes it computes, the values it
    reads (the model inputs, and what earlier stages produce) and the values it hands on (what
    later stages or the model's output need). What any backend's split cuts out."""
    full = check_assignment(graph, assignment)
    n_stages = max(full.values(), default=0) + 1
    needed_later = _needed_after(graph, full, n_stages)
    parts = []
    for k in range(n_stages):
        names = tuple(n for n in graph.nodes if full[n] == k and graph.nodes[n].op != INPUT_OP)
        inputs = tuple(dict.fromkeys(
            src for n in names for src in graph.nodes[n].inputs if full[src] < k or
            graph.nodes[src].op == INPUT_OP))
        parts.append((names, inputs, tuple(n for n in names if n in needed_later[k])))
    return parts


def _needed_after(graph: Graph, full: dict[str, int], n_stages: int) -> list[set[str]]:
    """For each stage k: values produced on k that a later stage or the model output reads."""
    needed = [set() for _ in range(n_stages)]
    for node in graph.compute_nodes:
        for src in node.inputs:
            if full[src] < full[node.name]:
                needed[full[src]].add(src)
    for out in graph.outputs:
        needed[full[out]].add(out)
    return needed


def _stage_module(gm: fx.GraphModule, fx_nodes: dict[str, fx.Node], names: tuple[str, ...],
                  inputs: tuple[str, ...], outputs: tuple[str, ...], name: str) -> fx.GraphModule:
    g = fx.Graph()
    env: dict[str, fx.Node] = {}
    for value in inputs:
        env[value] = g.placeholder(value)

    def copy(node: fx.Node) -> fx.Node:
        # Constants (parameters, and what is computed from them alone) are recomputed in each
        # stage that needs them, so they never cross a link.
        if node.name not in env:
            for src in node.all_input_nodes:
                copy(src)
            env[node.name] = g.node_copy(node, lambda n: env[n.name])
        return env[node.name]

    for n in names:
        copy(fx_nodes[n])
    g.output(tuple(env[v] for v in outputs))
    return fx.GraphModule(gm, g, name)


def run_stages(graph: Graph, stages: list[Stage], *inputs: Any) -> Any:
    """Run the stages in order, in this process; return the model's output as the model does."""
    env: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for stage in stages:
        env.update(stage.run(env))
    return assemble_output(graph, env)


def node_values(graph: Graph, *inputs: Any) -> dict[str, Any]:
    """Every node's value on ``inputs``, by name (no grad): what a stage, a part of a divided
    run or a decoded tensor must be checked against."""
    import torch

    values: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            values[n.name] = super().run_node(n)
            return values[n.name]

    with torch.inference_mode():
        Recorder(graph.module).run(*inputs)
    return values


def assemble_output(graph: Graph, env: Mapping[str, Any]) -> Any:
    """The model's output, structured as the model returns it, from the values in ``env``."""
    out_node = next(n for n in graph.module.graph.nodes if n.op == "output")
    result = fx.node.map_arg(out_node.args[0], lambda n: env[n.name])
    codegen = graph.module.graph._codegen
    if isinstance(codegen, fx.graph._PyTreeCodeGen):  # torch.export graphs flatten the output
        result = codegen.process_outputs(result)
    # fx records an OrderedDict or a ModelOutput as a plain dict: the eager structure wins
    return restructure(result, getattr(graph, "output_spec", None))
