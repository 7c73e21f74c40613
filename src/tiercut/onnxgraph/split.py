"""ONNX surgery: a node -> stage assignment of an ONNX Graph becomes one ONNX model per stage,
each run by ONNX Runtime; no torch is needed to run them.

Each stage model holds its graph nodes, the constants they need (recomputed there, as torch
stages recompute theirs) and the initializers those read; its inputs are the values it reads
from the model input or earlier stages, its outputs what later stages or the model's output
need. Values keep their ONNX names inside the model; a stage's ``inputs`` and ``outputs`` are
graph node names, as everywhere in tiercut, and ``run`` maps one onto the other. A node whose
value has several tensors passes them as a tuple.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from ..errors import AssignmentError, GraphError
from ..graph.dag import Graph
from ..graph.split import stage_parts
from .graph import OnnxSource, outer_inputs

_ORT_NP = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
           "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def session(model: onnx.ModelProto | str, threads: int | None = None, *,
            profile_prefix: str | None = None, optimized_path: str | None = None,
            spin: bool = False) -> Any:
    """An ONNX Runtime CPU session as tiercut runs ONNX: every graph optimization, sequential
    execution, ``threads`` intra-op threads (None: ONNX Runtime's default), errors only.

    Idle pool threads do not spin (``spin=False``): a tier server holds a session per stage
    and plan, the device its own, and spinning threads of one session take the cores of the
    next (two sessions taking turns on two cores ran 2x slower); profiles are measured so too.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if optimized_path:
        opts.optimized_model_filepath = optimized_path
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


@dataclass
class OnnxGraphStage:
    """One stage of an ONNX graph, with split.Stage's interface: ``index``, ``nodes``,
    ``inputs``, ``outputs``, ``run(env) -> {name: value}`` (numpy arrays). No nodes: no
    session, and ``run`` returns {}."""

    index: int
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    model: onnx.ModelProto | None = field(default=None, repr=False)
    source: OnnxSource | None = field(default=None, repr=False)
    threads: int | None = None
    _session: Any = field(default=None, repr=False)

    @property
    def session(self) -> Any:
        if self._session is None and self.model is not None:
            self._session = session(self.model, self.threads)
        return self._session

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """Run on the values in ``env`` (by graph node name); return this stage's outputs."""
        missing = [name for name in self.inputs if name not in env]
        if missing:
            raise AssignmentError(f"stage {self.index} is missing its inputs {missing}")
        if self.model is None:
            return {}
        sess = self.session
        feed: dict[str, Any] = {}
        for name in self.inputs:
            names, value = self.source.values[name], env[name]
            parts = (value,) if len(names) == 1 else tuple(value)
            feed.update(zip(names, parts))
        wanted = [v for name in self.outputs for v in self.source.values[name]]
        try:
            results = sess.run(wanted, {i.name: _array(i, feed[i.name], self.index)
                                        for i in sess.get_inputs()})
        except GraphError:
            raise
        except Exception as exc:
            raise GraphError(f"stage {self.index} failed in onnxruntime (nodes "
                             f"{self.nodes[0]}..{self.nodes[-1]}): {exc}") from exc
        out, at = {}, 0
        for name in self.outputs:
            n = len(self.source.values[name])
            out[name] = results[at] if n == 1 else tuple(results[at:at + n])
            at += n
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write this stage's ONNX model (one file; stages of models over 2 GiB do not fit)."""
        if self.model is None:
            raise AssignmentError(f"stage {self.index} has no nodes: there is no model to save")
        onnx.save(self.model, str(path))


def _array(info: Any, value: Any, index: int) -> np.ndarray:
    array = np.ascontiguousarray(value)
    want = _ORT_NP.get(info.type)
    shape = tuple(info.shape)
    if all(isinstance(d, int) for d in shape) and array.shape != shape and \
            array.size == int(np.prod(shape)):
        # ONNX Runtime's optimizer may hand on a value in another shape of the same elements
        # than the graph's (a scalar as a 1-element vector): the same data, reshaped
        array = array.reshape(shape)
    if (want and array.dtype != np.dtype(want)) or len(shape) != array.ndim or any(
            isinstance(d, int) and d != a for d, a in zip(shape, array.shape)):
        raise GraphError(f"stage {index}: input {info.name!r} is {array.shape} {array.dtype}, "
                         f"but the stage runs at {shape} {want} (ONNX stages have the fixed "
                         "shapes the graph was built at)")
    return array


def split_onnx(graph: Graph, assignment: Mapping[str, int],
               threads: int | None = None) -> list[OnnxGraphStage]:
    """One OnnxGraphStage per stage index 0..max (empty stages included), each an ONNX model
    cut out of ``graph``'s model; sessions open on first run."""
    source = source_of(graph)
    if not isinstance(source, OnnxSource):
        raise AssignmentError(f"graph {graph.name!r} was not built from ONNX "
                              "(graph_from_onnx); split torch graphs with tiercut.graph.split")
    stages = []
    for k, (names, inputs, outputs) in enumerate(stage_parts(graph, assignment)):
        model = stage_model(source, names, inputs, outputs, f"{graph.name}_stage{k}") \
            if names else None
        stages.append(OnnxGraphStage(k, names, inputs, outputs, model, source, threads))
    return stages


def stage_model(source: OnnxSource, names: Sequence[str], inputs: Sequence[str],
                outputs: Sequence[str], name: str) -> onnx.ModelProto:
    """The ONNX model computing graph nodes ``names`` from ``inputs`` to ``outputs``."""
    g = source.model.graph
    chosen = {source.node_index[n] for n in names}
    producer = {o: i for i, node in enumerate(g.node) for o in node.output if o}
    inits = {t.name: t for t in g.initializer}
    reads = [x for i in sorted(chosen) for x in outer_inputs(g.node[i])]
    stack = [x for x in reads if x in source.constants]
    while stack:  # the constant nodes these read, transitively
        value = stack.pop()
        i = producer.get(value)
        if i is not None and i not in chosen:
            chosen.add(i)
            stack.extend(x for x in outer_inputs(g.node[i]) if x in source.constants)
    nodes = [g.node[i] for i in sorted(chosen)]
    read = {x for node in nodes for x in outer_inputs(node)}
    given = [v for n in inputs for v in source.values[n] if v in read]
    stage_graph = helper.make_graph(
        nodes, name, [_info(source, v) for v in given],
        [_info(source, v) for n in outputs for v in source.values[n]],
        [inits[x] for x in sorted(read & inits.keys())])
    model = helper.make_model(stage_graph, opset_imports=list(source.model.opset_import),
                              producer_name="tiercut")
    model.ir_version = source.model.ir_version
    model.functions.extend(source.model.functions)
    return model


def _info(source: OnnxSource, value: str) -> onnx.ValueInfoProto:
    t = source.types[value]
    return helper.make_tensor_value_info(value, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)),
                                         list(t.shape))


def source_of(graph: Graph) -> OnnxSource:
    """The OnnxSource of a graph from ``graph_from_onnx`` (the runtime wraps it in an fx stub
    that keeps it as ``onnx_source``)."""
    return getattr(graph.module, "onnx_source", graph.module)


def run_onnx_stages(graph: Graph, stages: Sequence[OnnxGraphStage], *inputs: Any) -> list[Any]:
    """Run the stages in order on ``inputs`` (one array per model input, in graph order);
    return the model's outputs in the model's order, as ``session.run(None, ...)`` does."""
    if len(inputs) != len(graph.inputs):
        raise AssignmentError(f"{graph.name} takes inputs {list(graph.inputs)}, got "
                              f"{len(inputs)} arrays")
    env: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for stage in stages:
        env.update(stage.run(env))
    return [env[name] for name in graph.outputs]


def run_whole(graph: Graph, *inputs: Any, threads: int | None = None) -> list[Any]:
    """The unsplit model's outputs on ``inputs``, by ONNX Runtime: what stages must equal."""
    source = source_of(graph)
    return session(source.model, threads).run(None, source.feed(graph.inputs, inputs))
