"""What one node of a tiled run needs, and how it computes its part.

Spatial tiling runs a node on a rectangle of its output. Each op kind has a rule: from the
rows (or columns) of its output it is asked for, the rows of each input it reads, and how to
compute those output rows from the input rows it is given. Only kinds that can be divided
exactly have a rule:

- windowed ops (``conv2d``, ``maxpool2d``, ``avgpool2d``): output row o reads input rows
  o·stride − padding .. o·stride − padding + dilation·(kernel − 1). The part runs with its
  padding made explicit (zeros for convolutions and average pooling that counts its padding,
  −inf for max pooling) and the op's own padding set to 0, so a tile at the image's border
  pads exactly where the whole op would, and an inner tile reads its halo instead.
- element-wise ops (activations, eval-mode batch norm, dropout, add, mul, sub of tensors of
  the same shape) and ``cat`` along channels: output rows need the same input rows.

Anything else (global or adaptive pooling, flatten, linear, attention, a conv with
``padding_mode`` other than zeros, pooling with ``ceil_mode``...) has no rule: ``rule_for``
raises ``DecomposeError`` naming the node and its kind. The arithmetic per element is the
whole op's, so element-wise and pooling parts are bit-exact; a convolution's part sums the
same products, but the kernel may order them differently for another input size, so it is
held to 1e-5 relative (tests/test_decompose.py states and checks both).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import TiercutError

class DecomposeError(TiercutError, ValueError):
    """A decomposition that cannot be made exactly; the message names the node and its kind."""


@dataclass(frozen=True)
class Window:
    """A windowed op along both spatial axes: (height, width) pairs."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    fill: float  # what its padding holds: 0 (conv, avg pool) or -inf (max pool)

    def needs(self, axis: int, lo: int, hi: int) -> tuple[int, int]:
        """Input rows [lo', hi') that output rows [lo, hi) read along ``axis`` (2 or 3),
        before clipping to the input: negative or beyond it is padding."""
        a = axis - 2
        start = lo * self.stride[a] - self.padding[a]
        return start, (hi - 1) * self.stride[a] - self.padding[a] + self.dilation[a] * (
            self.kernel[a] - 1) + 1


@dataclass(frozen=True)
class Rule:
    """How one node runs on a part: ``window`` (None: element-wise) and ``run``, which takes
    the input parts (already cropped and padded as ``window`` says) and gives the output part."""

    kind: str
    window: Window | None
    run: Callable[..., torch.Tensor]
    inputs: tuple[str, ...]  # the fx nodes it reads, in call order


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


_UNARY_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                  nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Identity, nn.Dropout, nn.Mish)
_UNARY_FUNCTIONS = {F.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.hardswish,
                    F.leaky_relu, torch.relu, F.dropout, torch.nn.functional.hardsigmoid}
_BINARY = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
_UNARY_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}


def rule_for(node: fx.Node, gm: fx.GraphModule, kind: str) -> Rule:
    """The rule of fx ``node`` (graph kind ``kind``), or DecomposeError saying why none."""
    def refuse(why: str) -> DecomposeError:
        return DecomposeError(f"node {node.name!r} ({kind}) cannot be tiled exactly: {why}")

    tensors = tuple(a for a in node.all_input_nodes)
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise refuse(f"padding_mode {m.padding_mode!r} (zeros is tiled)")
            pad = _conv_padding(m)
            w = Window(_pair(m.kernel_size), _pair(m.stride), pad, _pair(m.dilation), 0.0)
            return Rule(kind, w, lambda x: F.conv2d(x, m.weight, m.bias, m.stride, 0,
                                                    m.dilation, m.groups), tensors)
        if isinstance(m, nn.MaxPool2d):
            if m.ceil_mode or m.return_indices:
                raise refuse("ceil_mode or return_indices (plain max pooling is tiled)")
            w = Window(_pair(m.kernel_size), _pair(m.stride), _pair(m.padding),
                       _pair(m.dilation), float("-inf"))
            return Rule(kind, w, lambda x: F.max_pool2d(x, m.kernel_size, m.stride, 0,
                                                        m.dilation), tensors)
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or m.divisor_override is not None or (
                    not m.count_include_pad and _pair(m.padding) != (0, 0)):
                raise refuse("ceil_mode, divisor_override or uncounted padding")
            w = Window(_pair(m.kernel_size), _pair(m.stride), _pair(m.padding), (1, 1), 0.0)
            return Rule(kind, w, lambda x: F.avg_pool2d(x, m.kernel_size, m.stride, 0),
                        tensors)
        if isinstance(m, (nn.BatchNorm2d,)) and not m.training:
            return Rule(kind, None, m, tensors)
        if isinstance(m, _UNARY_MODULES) and not (isinstance(m, nn.Dropout) and m.training):
            if getattr(m, "inplace", False):  # a part may be a view of another node's part
                return Rule(kind, None, lambda x: m(x.clone()), tensors)
            return Rule(kind, None, m, tensors)
        raise refuse(f"{type(m).__name__} has no exact spatial division (tiled: Conv2d, "
                     "MaxPool2d, AvgPool2d, eval BatchNorm2d, element-wise activations)")
    if node.op == "call_function":
        if node.target in _WINDOWED:
            return _functional_window(node, gm, kind, tensors, refuse)
        if node.target in _UNARY_FUNCTIONS and len(tensors) == 1:
            fn, kwargs, extra = node.target, dict(node.kwargs), node.args[1:]
            if fn is F.dropout:
                return Rule(kind, None, lambda x: x, tensors)
            if kwargs.get("inplace") or any(a is True for a in extra):  # never write a view
                return Rule(kind, None, lambda x: fn(x.clone(), *extra, **kwargs), tensors)
            return Rule(kind, None, lambda x: fn(x, *extra, **kwargs), tensors)
        if node.target in _BINARY and len(node.args) == 2 and not node.kwargs:
            fn, (a, b) = node.target, node.args
            if len(tensors) == 2:
                return Rule(kind, None, lambda x, y: fn(x, y), tensors)
            if len(tensors) == 1 and isinstance(b, (int, float)):
                return Rule(kind, None, lambda x: fn(x, b), tensors)
            if len(tensors) == 1 and isinstance(a, (int, float)):
                return Rule(kind, None, lambda y: fn(a, y), tensors)
        if node.target is torch.cat:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim not in (1, -3):
                raise refuse(f"cat along dim {dim} (along channels, dim 1, is tiled)")
            return Rule(kind, None, lambda *xs: torch.cat(xs, 1), tensors)
    if node.op == "call_method" and node.target in _UNARY_METHODS and len(tensors) == 1:
        method = str(node.target)
        return Rule(kind, None, lambda x: getattr(x, method)(), tensors)
    raise refuse("its output rows depend on more than a window of its input's rows (tiled: "
                 "convolution, max/avg pooling, batch norm, element-wise ops, cat on channels)")


def _args(node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name: positional ones after the input, then keywords."""
    got = dict(defaults)
    got.update(zip(names, node.args[1:]))
    got.update(node.kwargs)
    return got


def constant(node: fx.Node, gm: fx.GraphModule) -> torch.Tensor | None:
    """The value of a ``get_attr`` node (a parameter or buffer), None for any other node."""
    if node.op != "get_attr":
        return None
    value: Any = gm
    for part in str(node.target).split("."):
        value = getattr(value, part)
    return value


def _functional_window(node: fx.Node, gm: fx.GraphModule, kind: str, tensors: tuple,  # noqa: ANN001
                       refuse) -> Rule:
    """F.conv2d, F.max_pool2d and F.avg_pool2d with constant weights and numbers for sizes."""
    target = node.target
    if target is F.conv2d:
        a = _args(node, ("weight", "bias", "stride", "padding", "dilation", "groups"),
                  {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
        if isinstance(a["padding"], str):
            raise refuse("a padding given by name (give it as numbers)")
        weight, bias = a["weight"], a["bias"]
        value = constant(weight, gm) if isinstance(weight, fx.Node) else None
        if value is None or (isinstance(bias, fx.Node) and constant(bias, gm) is None):
            raise refuse("its weights are computed in the graph (parameters are tiled)")
        k = tuple(value.shape[2:])
        w = Window(_pair(k), _pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"]), 0.0)
        stride, dilation, groups = a["stride"], a["dilation"], a["groups"]
        return Rule(kind, w, lambda x, wt, *b: F.conv2d(x, wt, b[0] if b else None, stride, 0,
                                                         dilation, groups), tensors)
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices") \
        if target is F.max_pool2d else ("kernel_size", "stride", "padding", "ceil_mode",
                                        "count_include_pad", "divisor_override")
    a = _args(node, names, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                            "return_indices": False, "count_include_pad": True,
                            "divisor_override": None})
    if len(tensors) != 1 or a["ceil_mode"] or a["return_indices"] or a["divisor_override"] \
            or (not a["count_include_pad"] and _pair(a["padding"]) != (0, 0)):
        raise refuse("ceil_mode, return_indices, divisor_override or uncounted padding")
    kernel, stride = a["kernel_size"], a["stride"] or a["kernel_size"]
    if target is F.max_pool2d:
        w = Window(_pair(kernel), _pair(stride), _pair(a["padding"]), _pair(a["dilation"]),
                   float("-inf"))
        dilation = a["dilation"]
        return Rule(kind, w, lambda x: F.max_pool2d(x, kernel, stride, 0, dilation), tensors)
    w = Window(_pair(kernel), _pair(stride), _pair(a["padding"]), (1, 1), 0.0)
    return Rule(kind, w, lambda x: F.avg_pool2d(x, kernel, stride, 0), tensors)


_WINDOWED = {F.conv2d, F.max_pool2d, F.avg_pool2d}


def _conv_padding(m: nn.Conv2d) -> tuple[int, int]:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0)
        # "same" at stride 1: total d·(k − 1), the extra one at the end, which a symmetric
        # explicit padding cannot say
        k, d = _pair(m.kernel_size), _pair(m.dilation)
        total = [d[i] * (k[i] - 1) for i in range(2)]
        if any(t % 2 for t in total):
            raise DecomposeError(f"conv {m} pads 'same' unevenly; give its padding as numbers")
        return (total[0] // 2, total[1] // 2)
    return _pair(m.padding)
