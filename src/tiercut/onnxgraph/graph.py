"""An ONNX model as a tiercut Graph: one graph node per ONNX node that depends on a model input.

Why one node per ONNX node (not per value): a tiercut Node already carries several output
tensors, and ONNX nodes with several outputs are few (Split, LSTM, MaxPool with indices). A
node's *value* is what its consumers or the model's output use of its outputs: one array, or a
tuple of arrays when more than one is used; unused optional outputs are not part of it.

Nodes that depend on no model input (Constant, and what is computed from initializers alone)
are constants, not graph nodes: each stage that needs one recomputes it (as torch graphs do),
so they never cross a link. A node's parameter bytes are the initializers and constants it
reads, each counted at its first reader, so the graph's total is the model's.

Shapes come from ``onnx.shape_inference`` at fixed input shapes: the model's declared ones, or
``input_shapes`` for inputs with symbolic dimensions (refused without them). One ONNX Runtime
run on an example (``example_feed``) measures the values shape inference cannot fix (data-
dependent ones) and checks the rest (ORT's shape wins: inference is wrong on a few real
models) when all values together fit in ``CHECK_BYTES``.
Node names become Python identifiers (what the runtime's output map needs), unique; the model
kept in ``Graph.module`` (an OnnxSource) carries these names, so profiles and stages match.
"""
from __future__ import annotations

import builtins
import keyword
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from ..graph.dag import INPUT_OP, Graph, Node, TensorMeta
from . import flops as flops_mod
from .load import OnnxModelError, load_onnx

InputShapes = Mapping[str, Sequence[int]]
CHECK_BYTES = 1 << 30  # values shape inference fixed are checked by one ORT run up to this
_ILLEGAL = set(keyword.kwlist) | set(dir(builtins)) | {"inf", "nan", "NoneType", "torch",
                                                       "device", "fx_pytree", "pytree"}


@dataclass(frozen=True)
class ValueType:
    shape: tuple[int, ...]
    dtype: str  # numpy name: "float32", "int64", ...

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True, eq=False)
class OnnxSource:
    """What ``Graph.module`` holds for an ONNX graph: the model with fixed input shapes and
    tiercut's node names, and how graph nodes map onto it."""

    model: onnx.ModelProto
    values: Mapping[str, tuple[str, ...]]  # graph node -> ONNX values making up its value
    node_index: Mapping[str, int]  # compute node -> its index in model.graph.node
    types: Mapping[str, ValueType]  # ONNX value -> shape and dtype
    constants: frozenset[str]  # ONNX values that depend on no model input
    outputs: tuple[str, ...]  # the model's output values, in order
    path: str | None = None

    def feed(self, graph_inputs: Sequence[str], arrays: Sequence[Any]) -> dict[str, Any]:
        return {self.values[n][0]: a for n, a in zip(graph_inputs, arrays)}


def graph_from_onnx(model: str | Any, input_shapes: InputShapes | None = None,
                    name: str | None = None) -> Graph:
    """The tiercut Graph of an ONNX model (a path or a ModelProto), checked by ``lint()``.

    ``input_shapes`` fixes inputs by ONNX input name, e.g. ``{"x": (1, 3, 224, 224)}``; it is
    required for inputs with symbolic dimensions (a batch named "N"). ``name`` defaults to the
    path as given (what a plan names the model by, and ``tiercut serve --models`` hosts it
    under), or to the graph's name for a ModelProto.
    """
    path = None if isinstance(model, onnx.ModelProto) else str(model)
    proto = load_onnx(model)
    where = f"ONNX file {path!r}" if path else f"ONNX model {proto.graph.name!r}"
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    _fix_inputs(fixed, input_shapes or {}, where)
    _name_nodes(fixed)
    _own_outputs(fixed)
    types = _value_types(fixed, where)
    source = _build_source(fixed, types, path)
    if name is None:  # the path as given: what plans name, and servers host, the model by
        name = path or proto.graph.name or "onnx_model"
    graph = _build_graph(source, name, where)
    graph.lint()
    return graph


def _fix_inputs(model: onnx.ModelProto, shapes: InputShapes, where: str) -> None:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    unknown = sorted(set(shapes) - {i.name for i in inputs})
    if unknown:
        raise OnnxModelError(f"{where}: input_shapes names {unknown}, which are not inputs of "
                             f"the model (its inputs: {[i.name for i in inputs]})")
    symbolic = []
    for value in inputs:
        if not value.type.HasField("tensor_type"):
            raise OnnxModelError(f"{where}: input {value.name!r} is not a tensor; tiercut "
                                 "splits models whose inputs are tensors")
        dims = value.type.tensor_type.shape.dim
        if value.name in shapes:
            given = tuple(shapes[value.name])
            declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                        for d in dims]
            if len(given) != len(declared) or any(d is not None and d != g for d, g in
                                                  zip(declared, given)) or min(given, default=1) < 1:
                raise OnnxModelError(f"{where}: input_shapes gives {value.name!r} shape "
                                     f"{given}, which does not fit its declared shape "
                                     f"{_describe(dims)}")
            for d, g in zip(dims, given):
                d.Clear()
                d.dim_value = int(g)
        elif not value.type.tensor_type.HasField("shape") or any(
                not d.HasField("dim_value") or d.dim_value < 1 for d in dims):
            symbolic.append(value)
    if symbolic:
        shown = ", ".join(f"{v.name!r} {_describe(v.type.tensor_type.shape.dim)}"
                          for v in symbolic)
        example = ", ".join(f"{v.name!r}: {_example_shape(v.type.tensor_type.shape.dim)}"
                            for v in symbolic)
        raise OnnxModelError(
            f"{where}: input{'s' if len(symbolic) > 1 else ''} {shown} "
            f"{'have' if len(symbolic) > 1 else 'has'} symbolic or unknown dimensions; give "
            f"fixed sizes, e.g. input_shapes={{{example}}} (tiercut plans at one fixed input "
            "size)")


def _describe(dims: Any) -> str:
    return "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else
                           repr(d.dim_param or "?") for d in dims) + ")"


def _example_shape(dims: Any) -> tuple[int, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


def _identifier(raw: str, used: set[str]) -> str:
    name = re.sub(r"\W", "_", raw) or "node"
    if name[0].isdigit():
        name = f"_{name}"
    if name in _ILLEGAL:
        name = f"{name}_"
    base, i = name, 1
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def _name_nodes(model: onnx.ModelProto) -> None:
    """Every node gets a unique identifier name (ONNX names are optional and may repeat)."""
    used = {_identifier(i.name, set()) for i in model.graph.input}
    for i, node in enumerate(model.graph.node):
        node.name = _identifier(node.name or f"{node.op_type.lower()}_{i}", used)


def _own_outputs(model: onnx.ModelProto) -> None:
    """A model output that is not the only used output of its own node (a graph input, a
    second output of Split, an output listed twice) is given an Identity node of its own."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output if o}
    wanted = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    seen: set[str] = set()
    used_names = {n.name for n in g.node} | {i.name for i in g.input}
    for out in g.output:
        node = producer.get(out.name)
        if node is None or out.name in seen or sum(o in wanted for o in node.output if o) > 1:
            new = f"{out.name}__out{len(seen)}"
            g.node.append(helper.make_node("Identity", [out.name], [new],
                                           name=_identifier(f"{out.name}_out", used_names)))
            out.name = new
        seen.add(out.name)


def _value_types(model: onnx.ModelProto, where: str) -> dict[str, ValueType]:
    """Shape and dtype of every tensor value, from shape inference, else one ORT run."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - a model shape inference rejects is still runnable
        inferred, _ = model, exc
    types: dict[str, ValueType] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = _tensor_type(vi.type)
        if t is not None:
            types[vi.name] = t
    for init in model.graph.initializer:
        types[init.name] = ValueType(tuple(init.dims), _np_dtype(init.data_type))
    values = [o for n in model.graph.node for o in n.output if o]
    known = sum(types[o].nbytes for o in values if o in types)
    # shape inference can be wrong where ORT is right (a Squeeze in Silero VAD), so one ORT
    # run checks every value when they all fit in CHECK_BYTES; else only the unknown ones
    wanted = values if known <= CHECK_BYTES else [o for o in values if o not in types]
    if wanted:
        types.update(_measure_types(model, wanted, where))
    return types


def _tensor_type(t: onnx.TypeProto) -> ValueType | None:
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = t.tensor_type.shape.dim
    if any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims) or \
            not t.tensor_type.elem_type:
        return None
    return ValueType(tuple(d.dim_value for d in dims), _np_dtype(t.tensor_type.elem_type))


def _np_dtype(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _measure_types(model: onnx.ModelProto, names: list[str], where: str) -> dict[str, ValueType]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.ValueInfoProto(name=n) for n in names if n not in have)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4  # the error comes back in our message
    try:
        session = ort.InferenceSession(probe.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
        results = session.run(names, example_feed(model))
    except Exception as exc:  # noqa: BLE001
        raise OnnxModelError(f"{where}: shape inference leaves {len(names)} values unknown "
                             f"(e.g. {names[:3]}) and ONNX Runtime cannot run the model to "
                             f"measure them on an example (floats N(0, 1), integers 0): "
                             f"{str(exc)[:300]}") from None
    out = {}
    for n, r in zip(names, results):
        if not isinstance(r, np.ndarray):
            raise OnnxModelError(f"{where}: value {n!r} is a {type(r).__name__}, not a tensor; "
                                 "tiercut splits models whose values are tensors")
        out[n] = ValueType(tuple(r.shape), r.dtype.name)
    return out


def example_feed(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """An example for each model input at its (fixed) declared shape: floats from N(0, 1),
    integers 0 (a valid index for any table), booleans True."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        t = _tensor_type(value.type)
        if t is None:
            raise OnnxModelError(f"input {value.name!r} has no fixed shape; fix it first")
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            feed[value.name] = rng.standard_normal(t.shape).astype(dtype)
        elif dtype.kind == "b":
            feed[value.name] = np.ones(t.shape, dtype)
        else:
            feed[value.name] = np.zeros(t.shape, dtype)
    return feed


def outer_inputs(node: onnx.NodeProto) -> list[str]:
    """Values a node reads: its inputs, then what its subgraphs (If, Loop, Scan) read from
    outside them."""
    names = [i for i in node.input if i]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                    list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []):
            inner = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            for n in sub.node:
                names += [i for i in outer_inputs(n) if i not in inner]
                inner.update(n.output)
    return list(dict.fromkeys(names))


def _build_source(model: onnx.ModelProto, types: dict[str, ValueType],
                  path: str | None) -> OnnxSource:
    g = model.graph
    constants = {i.name for i in g.initializer}
    used = {i for n in g.node for i in outer_inputs(n)} | {o.name for o in g.output}
    values: dict[str, tuple[str, ...]] = {}
    used_names = {n.name for n in g.node}  # inputs' names avoid the nodes' (and each other)
    for value in g.input:
        if value.name not in constants:
            values[_identifier(value.name, used_names)] = (value.name,)
    node_index = {}
    for i, node in enumerate(g.node):
        if all(x in constants for x in outer_inputs(node)):
            constants.update(o for o in node.output if o)
            continue
        node_index[node.name] = i
        values[node.name] = tuple(o for o in node.output if o and o in used)
    return OnnxSource(model, values, node_index, types, frozenset(constants),
                      tuple(o.name for o in g.output), path)


def _build_graph(source: OnnxSource, name: str, where: str) -> Graph:
    g = source.model.graph
    producer = {v: n for n, vs in source.values.items() for v in vs}
    nodes: dict[str, Node] = {}
    counted: set[str] = set()
    for tc_name, onnx_values in source.values.items():
        index = source.node_index.get(tc_name)
        metas = []
        for v in onnx_values:
            t = source.types.get(v)
            if t is None:
                raise OnnxModelError(f"{where}: the shape of value {v!r} is unknown")
            metas.append(TensorMeta(t.shape, t.dtype, t.nbytes))
        size = sum(m.nbytes for m in metas)
        if index is None:
            nodes[tc_name] = Node(tc_name, INPUT_OP, onnx_values[0], (), tuple(metas), size)
            continue
        node = g.node[index]
        reads = outer_inputs(node)
        inputs = tuple(dict.fromkeys(producer[x] for x in reads if x not in source.constants
                                     and x in producer))
        missing = [x for x in reads if x not in source.constants and x not in producer]
        if missing:
            raise OnnxModelError(f"{where}: node {node.name!r} reads {missing}, which no node "
                                 "produces and which is not an input or initializer")
        params = sum(source.types[x].nbytes for x in reads
                     if x in source.constants and x in source.types and x not in counted)
        counted.update(x for x in reads if x in source.constants)
        in_shapes = [source.types[x].shape if x in source.types else None for x in node.input]
        rank = len(in_shapes[0]) if in_shapes and in_shapes[0] is not None else 0
        kind = flops_mod.op_kind(node.op_type, node.domain, rank)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute
                 if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)}
        out_shapes = [source.types[o].shape for o in node.output if o in source.types]
        nodes[tc_name] = Node(
            tc_name, kind, f"{node.domain + '::' if node.domain else ''}{node.op_type}", inputs,
            tuple(metas), size, params, flops_mod.estimate(kind, node.op_type, in_shapes,
                                                           out_shapes, attrs))
    constant = [o for o in source.outputs if o not in producer]
    if constant:
        raise OnnxModelError(f"{where}: model outputs {constant} depend on no model input "
                             "(constants); tiercut splits what is computed from the inputs")
    outputs = tuple(producer[o] for o in source.outputs)
    return Graph(name=name, nodes=nodes, outputs=outputs, module=source, method="onnx")
