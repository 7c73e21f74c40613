"""Plans whose model is an ONNX file (a ``.onnx`` path): the graph, the stages and the example
inputs come from the file (tiercut.onnxgraph), not from the zoo, and ONNX Runtime runs every
stage, whatever ``--backend`` says. The runtime moves torch tensors; the stages here convert
at their edges (zero-copy where the layout allows).

A server hosts an ONNX file under the path it was given (``tiercut serve --models
models/sq.onnx``), and a plan names its model by that same string: give the same path on every
machine (the same relative path from each one's working folder, say). Input shapes: the file's
declared ones; ``input_shape`` in the plan fixes a single input's symbolic dimensions.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
import torch.fx as fx

from ..errors import PlanError
from ..graph.dag import INPUT_OP, Graph
from ..onnxgraph import graph_from_onnx, load_onnx
from ..onnxgraph.split import OnnxGraphStage, split_onnx
from ..zoo import ZooEntry, resolve
from ..zoo.registry import InputSpec

SUFFIX = ".onnx"


def is_onnx(model: str) -> bool:
    """Whether a plan's model names an ONNX file rather than a zoo entry or module:factory."""
    return isinstance(model, str) and model.lower().endswith(SUFFIX)


def check_hosted(name: str) -> None:
    """What a server checks of each name it will host: a zoo name resolves, an ONNX file
    (``.onnx``) loads and passes the checker (the error names the file and what is wrong), so
    a bad file fails when the server starts, not at the first plan. Symbolic input sizes are
    allowed: a plan's ``input_shape`` fixes them at Prepare."""
    if not is_onnx(name):
        resolve(name)
        return
    load_onnx(name)


def onnx_graph(model: str, input_shape: tuple[int, ...] | None = None) -> Graph:
    """The file's Graph; its ``module`` is an fx stub whose output lists the model's outputs
    (what ``assemble_output`` reads), and carries the OnnxSource as ``onnx_source``."""
    shapes = None
    if input_shape is not None:
        import onnx

        proto = onnx.load(model, load_external_data=False)
        inits = {i.name for i in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in inits]
        # the input it fixes: the only one, else the only one with symbolic sizes
        free = [i.name for i in inputs if any(not d.HasField("dim_value")
                                              for d in i.type.tensor_type.shape.dim)]
        names = [i.name for i in inputs] if len(inputs) == 1 else free
        if len(names) != 1:
            raise PlanError(f"plan field 'input_shape' fixes one input, but {model} has "
                            f"{len(free)} inputs of symbolic size: {free}")
        shapes = {names[0]: input_shape}
    graph = graph_from_onnx(model, shapes, name=model)
    return dataclasses.replace(graph, module=_output_stub(graph))


def _output_stub(graph: Graph) -> fx.GraphModule:
    g = fx.Graph()
    outs = []
    for name in graph.outputs:
        node = g.placeholder(name)
        if node.name != name:  # fx snake-cases names (Identity_0 -> identity_0); ours are
            if not name.isidentifier():  # identifiers already (graph_from_onnx made them so)
                raise PlanError(f"{graph.name}: output node {name!r} cannot be named in fx")
            node.name = name
        outs.append(node)
    g.output(outs[0] if len(outs) == 1 else tuple(outs))
    stub = fx.GraphModule(torch.nn.Module(), g, "onnx_outputs")
    stub.onnx_source = graph.module
    return stub


def onnx_entry(graph: Graph) -> ZooEntry:
    """A ZooEntry for the file: its inputs' names, shapes and dtypes (for example inputs)."""
    specs = tuple(InputSpec(n.name, n.outputs[0].shape, getattr(torch, n.outputs[0].dtype))
                  for n in graph if n.op == INPUT_OP)
    return ZooEntry(graph.name, _no_factory(graph.name), specs, f"ONNX file {graph.name}")


def _no_factory(name: str) -> Any:
    def build() -> torch.nn.Module:
        raise PlanError(f"{name} is an ONNX file: it has no torch module to build")
    return build


def onnx_stages(graph: Graph, assignment: Mapping[str, int],
                threads: int | None = None) -> list["TorchOnnxStage"]:
    """The plan's stages cut out of the file, each run by ONNX Runtime on torch tensors."""
    return [TorchOnnxStage(s) for s in split_onnx(graph, assignment, threads)]


class TorchOnnxStage:
    """An OnnxGraphStage that takes and returns torch tensors (split.Stage's interface)."""

    def __init__(self, stage: OnnxGraphStage) -> None:
        self.stage = stage
        self.index, self.nodes = stage.index, stage.nodes
        self.inputs, self.outputs = stage.inputs, stage.outputs

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]:
        feed = {n: _to_numpy(env[n]) for n in self.inputs if n in env}
        return {k: _to_torch(v) for k, v in self.stage.run(feed).items()}

    def __repr__(self) -> str:
        return f"TorchOnnxStage({self.stage!r})"


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().numpy()
    if isinstance(value, (tuple, list)):
        return tuple(_to_numpy(v) for v in value)
    return value


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (tuple, list)):
        return tuple(_to_torch(v) for v in value)
    return value
