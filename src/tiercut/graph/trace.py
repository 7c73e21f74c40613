"""Graph capture: ``trace(model, example_inputs) -> Graph``.

torch.fx symbolic tracing first (it keeps nn modules as nodes, which is what users recognise in
a profile); torch.export as the fallback for models fx cannot trace. Shapes, dtypes, bytes and
FLOPs come from running the example through the captured module. An ``fx.GraphModule`` is
used as it is. Before the Graph is built, arguments left at their defaults become constants,
dead nodes are erased and the eager output's structure is kept (``capture_fixes``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import operator
import traceback
from typing import Any, Iterator, Sequence

import torch
import torch.fx as fx
from torch import nn

from . import capture_fixes as fixes
from . import flops as flops_mod
from ..errors import ExampleInputError, TraceError
from .dag import INPUT_OP, Graph, Node, TensorMeta

_INT_BYTES = 8  # a Python int (a size, an index) crossing a link
log = logging.getLogger(__name__)


def trace(model: nn.Module, example_inputs: Any, name: str | None = None,
          leaf_modules: Sequence[str | type] = ()) -> Graph:
    """Capture ``model`` as a Graph; ``example_inputs`` is a tensor or a tuple of tensors.

    ``leaf_modules``: submodules kept whole, one node each, never traced into: by qualified
    name (``"head.postprocess"``) or by class. A block whose Python control flow depends on
    the values (a detector's NMS, a cache) stops tracing; as a leaf it runs as it is, on
    whichever tier its node is placed."""
    fixes.refuse_onnx(model)
    args = _as_args(example_inputs)
    leaves = _leaves(model, leaf_modules)
    name = name or type(model).__name__
    model = model.eval()
    with torch.inference_mode():
        try:
            eager = model(*args)
        except Exception as exc:  # the model's own error, with the shapes we tried
            raise ExampleInputError(
                f"example input of shape {_describe(args)} does not fit {name}: {exc}"
            ) from exc
    if isinstance(model, fx.GraphModule):  # already captured: a copy, not traced again
        gm, method = fx.GraphModule(model, copy.deepcopy(model.graph), name), "fx"
        fixes.fold_defaults(gm, len(args))
    else:
        gm, method = _capture(model, args, name, leaves)
    dead = fixes.remove_dead(gm)
    if dead:
        log.info("%s: %d dead nodes (no path to an output) removed", name, dead)
    graph = _build_graph(gm, args, name, method)
    graph.dead_removed = dead
    graph.output_spec = fixes.output_spec(eager)
    graph.lint()
    return graph


def _as_args(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and all(
        isinstance(a, torch.Tensor) for a in example_inputs
    ) and example_inputs:
        return tuple(example_inputs)
    raise ExampleInputError(
        f"example inputs must be a tensor or a non-empty tuple of tensors, got {type(example_inputs).__name__}"
    )


def _describe(args: Sequence[torch.Tensor]) -> str:
    return ", ".join(f"{tuple(a.shape)} {str(a.dtype).removeprefix('torch.')}" for a in args)


def _leaves(model: nn.Module, leaf_modules: Sequence[str | type]) -> tuple[set[str], tuple]:
    """(qualified names, classes) of the leaf modules, every name checked against the model."""
    if isinstance(leaf_modules, (str, type)):
        leaf_modules = (leaf_modules,)
    names = {n for n, _ in model.named_modules() if n}
    by_name = {x for x in leaf_modules if isinstance(x, str)}
    classes = tuple(x for x in leaf_modules if isinstance(x, type))
    bad = [x for x in leaf_modules if not isinstance(x, (str, type))]
    if bad:
        raise TraceError(f"leaf_modules takes submodule names or classes, got {bad[:3]!r}")
    unknown = sorted(by_name - names)
    if unknown:
        raise TraceError(f"leaf_modules names {unknown}, not submodules of "
                         f"{type(model).__name__}; it has {sorted(names)[:12]}"
                         f"{' ...' if len(names) > 12 else ''}")
    return by_name, classes


class _WhereTracer(fx.Tracer):
    """An fx tracer that remembers where it was, so a failure can name the spot, and keeps
    the user's leaf modules whole."""

    def __init__(self, leaves: tuple[set[str], tuple] = (set(), ())) -> None:
        super().__init__()
        self.where_stack: list[str] = []
        self.last_node: str | None = None
        self.leaf_names, self.leaf_classes = leaves
        self.failed_in: str | None = None  # the innermost module the failure came from

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaf_names or (self.leaf_classes
                                           and isinstance(m, self.leaf_classes)):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):  # noqa: ANN001
        self.where_stack.append(self.path_of_module(m) or type(m).__name__)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the stack unwinds before the caller sees it
                self.failed_in = self.where_stack[-1]
            raise
        finally:
            self.where_stack.pop()

    def create_node(self, *args, **kwargs):  # noqa: ANN002, ANN003
        node = super().create_node(*args, **kwargs)
        self.last_node = node.name
        return node


def _capture(model: nn.Module, args: tuple, name: str,
             leaves: tuple[set[str], tuple] = (set(), ())) -> tuple[fx.GraphModule, str]:
    tracer = _WhereTracer(leaves)
    concrete = fixes.defaulted_args(model, len(args))
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
        fixes.drop_concrete_placeholders(graph, concrete)
        return fx.GraphModule(tracer.root, graph, name), "fx"
    except Exception as fx_exc:  # fx raises TraceError, TypeError, RuntimeError, ...
        where = tracer.failed_in or "<top level>"
        fx_error = (f"{type(fx_exc).__name__}: {fx_exc} (in module {where!r}, after node "
                    f"{tracer.last_node!r}, at {_user_frame(fx_exc)})")
        if leaves[0] or leaves[1]:  # export traces into every module: it cannot keep leaves
            raise TraceError(f"cannot capture {name} with leaf modules: torch.fx stopped with "
                             f"{fx_error}. Add that block to leaf_modules too"
                             ) from fx_exc
    try:
        with _quiet_torch_logs():
            exported = torch.export.export(model, args, strict=False)
    except Exception as export_exc:
        first = str(export_exc).strip().splitlines()[0] if str(export_exc).strip() else ""
        if getattr(getattr(model, "config", None), "use_cache", False):
            raise TraceError(
                f"cannot capture {name}: it is a transformers model with its cache on "
                f"(config.use_cache=True), and torch.export stopped with "
                f"{type(export_exc).__name__}: {first}. A cache is state carried between "
                "calls, not part of one forward: build it with use_cache=False (e.g. "
                "GPT2Config(..., use_cache=False)), or wrap it with tiercut.zoo.hf.wrap(model) "
                "(tiercut.zoo.hf.hf_model, or the 'hf:NAME' model spec, do so)"
            ) from export_exc
        raise TraceError(
            f"cannot capture {name}: torch.fx stopped with {fx_error}; the torch.export "
            f"fallback stopped with {type(export_exc).__name__}: {first} (at "
            f"{_user_frame(export_exc)}). Rewrite that construct without data-dependent "
            "Python control flow" + (f", or keep that block whole on one tier: trace(..., "
                                     f"leaf_modules=[{where!r}])." if where != "<top level>"
                                     else ", or move it into a submodule kept whole "
                                     "(trace's leaf_modules=).")
        ) from export_exc
    gm = exported.module()
    for node in list(gm.graph.nodes):  # export's input guard is a check, not part of the model
        if node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)
    gm.recompile()
    return gm, "export"


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch.export logs its failures at length; the TraceError we raise says what matters."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # it also prints graphs to stderr
            yield
    finally:
        logger.setLevel(level)


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame outside torch: the user's line that failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename]
    if not frames:
        return "unknown location"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} `{(f.line or '').strip()}`"


def _build_graph(gm: fx.GraphModule, args: tuple, name: str, method: str) -> Graph:
    values = _run_recording(gm, args, name)
    constant = _constant_nodes(gm)
    modules = dict(gm.named_modules())
    nodes: dict[str, Node] = {}
    outputs: tuple[str, ...] = ()
    for fx_node in gm.graph.nodes:
        if fx_node.op == "output":
            outputs = tuple(n.name for n in fx_node.all_input_nodes if n.name in nodes)
            continue
        if fx_node.name in constant:
            continue
        value = values[fx_node.name]
        module = modules.get(fx_node.target) if fx_node.op == "call_module" else None
        kind = op_kind(fx_node, module)
        arg_values = tuple(_value_of(a, values) for a in fx_node.args)
        metas = tuple(_tensor_metas(value))
        nodes[fx_node.name] = Node(
            name=fx_node.name,
            op=kind,
            target=_target_name(fx_node),
            inputs=tuple(dict.fromkeys(
                n.name for n in fx_node.all_input_nodes if n.name not in constant)),
            outputs=metas,
            output_bytes=sum(m.nbytes for m in metas) + _INT_BYTES * _count_ints(value),
            param_bytes=_param_bytes(fx_node, module, values, constant),
            flops=0 if kind == INPUT_OP else flops_mod.estimate(kind, arg_values, value, module),
        )
    return Graph(name=name, nodes=nodes, outputs=outputs, module=gm, method=method)


def _run_recording(gm: fx.GraphModule, args: tuple, name: str) -> dict[str, Any]:
    values: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            values[n.name] = result = super().run_node(n)
            return result

    with torch.inference_mode():
        try:
            Recorder(gm).run(*args)
        except Exception as exc:
            raise ExampleInputError(
                f"the captured graph of {name} fails on inputs {_describe(args)}: {exc}"
            ) from exc
    return values


def _constant_nodes(gm: fx.GraphModule) -> set[str]:
    """Nodes that depend on no input: parameters and what is computed from them alone.

    They are not graph nodes: each stage that needs one recomputes it, so they never cross.
    """
    constant: set[str] = set()
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if all(src.name in constant for src in node.all_input_nodes):
            constant.add(node.name)
    return constant


def op_kind(node: fx.Node, module: nn.Module | None) -> str:
    if node.op == "placeholder":
        return INPUT_OP
    if node.op == "call_module":
        return type(module).__name__.lower()
    if node.op == "call_method":
        return str(node.target)
    target = node.target
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):  # aten.conv2d.default -> conv2d
        return target._schema.name.split("::")[-1]
    return getattr(target, "__name__", str(target)).strip("_") or str(target)


def _target_name(node: fx.Node) -> str:
    if node.op in ("call_module", "call_method", "placeholder", "get_attr"):
        return str(node.target)
    target = node.target
    module = getattr(target, "__module__", None) or ""
    qual = getattr(target, "__qualname__", None) or str(target)
    return f"{module}.{qual}" if module and not isinstance(target, torch._ops.OpOverload) else str(target)


def _value_of(arg: Any, values: dict[str, Any]) -> Any:
    return values.get(arg.name) if isinstance(arg, fx.Node) else arg


def _tensor_metas(value: Any) -> list[TensorMeta]:
    if isinstance(value, torch.Tensor):
        return [TensorMeta(tuple(value.shape), str(value.dtype).removeprefix("torch."),
                           value.numel() * value.element_size())]
    if isinstance(value, (tuple, list)):
        return [m for v in value for m in _tensor_metas(v)]
    if isinstance(value, dict):
        return [m for v in value.values() for m in _tensor_metas(v)]
    return []


def _count_ints(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 1
    if isinstance(value, (tuple, list, torch.Size)):
        return sum(_count_ints(v) for v in value if not isinstance(v, torch.Tensor))
    return 0


def _param_bytes(node: fx.Node, module: nn.Module | None, values: dict[str, Any],
                 constant: set[str]) -> int:
    if module is not None:
        return sum(t.numel() * t.element_size()
                   for t in (*module.parameters(), *module.buffers()))
    # functional ops (torch.export graphs) read their weights from constant nodes
    return sum(values[src.name].numel() * values[src.name].element_size()
               for src in node.all_input_nodes
               if src.name in constant and isinstance(values.get(src.name), torch.Tensor))
