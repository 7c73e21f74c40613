"""What capture does to a traced module before it becomes a Graph (``trace`` calls these).

- Arguments the example does not give, left at their defaults, are constants of the graph, not
  inputs: fx traces with them as ``concrete_args`` (so ``if attn_mask is None`` takes the
  branch the model takes) and the placeholders and guards fx makes for them are dropped.
- Dead nodes, with no path to an output, are erased: a stage holding only those would have no
  outputs (ONNX Runtime rejects such a graph) and a profile would time work nobody reads.
- The model's output structure (an ``OrderedDict``, a transformers ``ModelOutput``, nested
  tuples) is recorded from the eager run, so the stages' outputs are reassembled as the model
  returns them.
"""
from __future__ import annotations

import inspect
import operator
from pathlib import PurePath
from typing import Any

import torch
import torch.fx as fx
import torch.utils._pytree as pytree

_EMPTY = inspect.Parameter.empty
# Python's in-place operators: an unread result still changes the value it was given.
_INPLACE = {operator.setitem, operator.delitem, operator.iadd, operator.isub, operator.imul,
            operator.itruediv, operator.ifloordiv, operator.imod, operator.ipow, operator.iand,
            operator.ior, operator.ixor, operator.ilshift, operator.irshift, operator.imatmul}


def refuse_onnx(model: Any) -> None:
    """An ONNX model is not a torch module: say where it goes instead."""
    path = str(model) if isinstance(model, (str, PurePath)) else None
    if path is not None:
        hint = (f"trace() takes a torch nn.Module, not the path {path!r}"
                + ("; an ONNX file is imported with tiercut.onnxgraph.load_onnx(path) (or "
                   f"`tiercut profile {path}`)" if path.lower().endswith(".onnx") else
                   "; build the model first (e.g. tiercut.zoo.resolve(spec).build())"))
        raise ValueError(hint)
    if type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx"):
        raise TypeError("trace() takes a torch nn.Module, not an onnx ModelProto: import an ONNX "
                        "model with tiercut.onnxgraph.load_onnx(model) (or `tiercut profile "
                        "model.onnx`)")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"trace() takes a torch nn.Module, got {type(model).__name__}")


def defaulted_args(model: torch.nn.Module, n_given: int) -> dict[str, Any]:
    """forward's parameters after the ``n_given`` positional ones, with their defaults."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin forward: nothing to read
        return {}
    out: dict[str, Any] = {}
    positional = 0
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            if positional <= n_given:
                continue
        if p.default is not _EMPTY:
            out[p.name] = p.default
    return out


def drop_concrete_placeholders(graph: fx.Graph, concrete: dict[str, Any]) -> None:
    """Erase fx's placeholders for ``concrete`` arguments (``attn_mask_1``) and the guards it
    hangs on them: the traced code already uses the default values themselves."""
    targets = {f"{name}_{i}" for name in concrete for i in range(1, 64)}
    doomed: list[fx.Node] = []
    for node in graph.nodes:
        if node.op == "placeholder" and node.target in targets:
            doomed.append(node)
        elif doomed and any(src in doomed for src in node.all_input_nodes):
            doomed.append(node)
    for node in reversed(doomed):
        outside = [u for u in node.users if u not in doomed]
        if outside:  # only guards read them; anything else means fx used the placeholder
            raise RuntimeError(f"default argument {node.name!r} is read by {outside[0].name!r}")
        graph.erase_node(node)


def fold_defaults(gm: fx.GraphModule, n_given: int) -> None:
    """In a given GraphModule, placeholders past the ``n_given`` inputs become their defaults."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in placeholders[n_given:]:
        if not node.args:
            raise TypeError(f"GraphModule input {node.name!r} has no default and no example "
                            f"value: give {len(placeholders)} example inputs")
        value = node.args[0]
        for user in list(node.users):
            user.args = fx.node.map_arg(user.args, lambda a, n=node, v=value: v if a is n else a)
            user.kwargs = fx.node.map_arg(user.kwargs,
                                          lambda a, n=node, v=value: v if a is n else a)
        gm.graph.erase_node(node)
    gm.recompile()


def remove_dead(gm: fx.GraphModule) -> int:
    """Erase every node with no path to the output (in-place ops count as reaching it);
    return how many were erased. Placeholders stay: they are the calling convention."""
    nodes = list(gm.graph.nodes)
    live: set[fx.Node] = set()
    for node in reversed(nodes):
        if node.op in ("output", "placeholder") or node in live or _mutates(node):
            live.add(node)
            live.update(node.all_input_nodes)
    dead = [n for n in reversed(nodes) if n not in live]
    for node in dead:  # users first: reversed topological order
        gm.graph.erase_node(node)
    if dead:
        gm.graph.lint()
        gm.recompile()
    return len(dead)


def _mutates(node: fx.Node) -> bool:
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.startswith("_")
    if node.op == "call_function":
        if node.target in _INPLACE:
            return True
        if isinstance(node.target, torch._ops.OpOverload):
            return node.target._schema.is_mutable
        return getattr(node.target, "__name__", "").endswith("_") and \
            not getattr(node.target, "__name__", "_").startswith("_")
    return False


def _size(value: Any) -> bool:
    # a torch.Size is one value to the wire and the model: pytree would rebuild it as a tuple
    return isinstance(value, torch.Size)


def output_spec(value: Any) -> Any:
    """The pytree structure of the eager output (None where pytree does not know a type)."""
    try:
        return pytree.tree_structure(value, is_leaf=_size)
    except Exception:  # noqa: BLE001 -- an unknown container: keep the captured structure
        return None


def restructure(result: Any, spec: Any) -> Any:
    """``result`` in the eager output's structure, when the leaves line up one for one."""
    if spec is None:
        return result
    leaves = pytree.tree_leaves(result, is_leaf=_size)
    if len(leaves) != spec.num_leaves:
        return result
    return pytree.tree_unflatten(leaves, spec)
