"""FLOP estimates per op kind, from the shapes seen when the example ran.

A multiply-add counts as two FLOPs. Published model tables (torchvision, timm) count
multiply-accumulates of convolutions and matrix products only: ``macs`` gives that figure.
"""
from __future__ import annotations

import math
from typing import Any

import torch

# Op kinds whose cost is multiply-accumulates (what published MAC tables count).
MAC_KINDS = frozenset({
    "conv1d", "conv2d", "conv3d", "convolution", "linear", "addmm", "mm", "bmm", "matmul",
    "baddbmm", "scaled_dot_product_attention", "einsum",
})
# Ops that only move or view data.
FREE_KINDS = frozenset({
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "getitem", "size",
    "getattr", "unsqueeze", "squeeze", "expand", "cat", "stack", "chunk", "split", "identity",
    "dropout", "embedding", "t", "clone", "to", "type_as", "unflatten", "slice", "select",
    "_assert", "detach", "alias", "_unsafe_view", "max_pool_with_indices", "zeros", "ones",
    "arange", "full", "new_zeros", "new_ones", "ones_like", "zeros_like", "full_like", "expand_as",
})
# Elementwise-ish ops that cost several FLOPs per output element.
PER_ELEMENT = {
    "batchnorm1d": 2, "batchnorm2d": 2, "batchnorm3d": 2, "batch_norm": 2,
    "_native_batch_norm_legit_no_training": 2,
    "layernorm": 5, "layer_norm": 5, "groupnorm": 5, "group_norm": 5,
    "softmax": 5, "log_softmax": 5, "_softmax": 5,
    "gelu": 8, "silu": 4, "sigmoid": 4, "tanh": 4, "hardswish": 3, "hardsigmoid": 2, "erf": 8,
}


def macs(kind: str, flops: int) -> int:
    """Multiply-accumulates of a node, as published tables count them."""
    return flops // 2 if kind in MAC_KINDS else 0


def numel(value: Any) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else 0


def estimate(kind: str, args: tuple, out: Any, module: torch.nn.Module | None) -> int:
    """FLOPs of one node given its argument values, its output and its module (if any)."""
    if kind in FREE_KINDS:
        return 0
    out_elems = numel(out)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if kind in ("conv1d", "conv2d", "conv3d", "convolution"):
        weight = module.weight if module is not None else args[1]
        # weight is (C_out, C_in/groups, *kernel): each output element reads one filter slice
        return 2 * out_elems * math.prod(weight.shape[1:])
    if kind in ("linear", "addmm", "mm", "matmul", "bmm", "baddbmm"):
        a = tensors[1] if kind in ("addmm", "baddbmm") else tensors[0]
        return 2 * out_elems * (a.shape[-1] if a.dim() else 1)
    if kind == "scaled_dot_product_attention":
        q, k = tensors[0], tensors[1]
        return 4 * q.numel() * k.shape[-2]
    if kind in ("maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
                "max_pool2d", "avg_pool2d"):
        kernel = module.kernel_size if module is not None else args[1]
        area = math.prod(kernel) if isinstance(kernel, (tuple, list)) else kernel ** 2
        return out_elems * area
    if kind.startswith("adaptive") or kind in ("mean", "sum", "amax", "max", "norm", "var", "std"):
        return max(numel(tensors[0]) if tensors else 0, out_elems)
    if kind in PER_ELEMENT:
        return PER_ELEMENT[kind] * out_elems
    return out_elems  # plain elementwise arithmetic and activations: one FLOP per element
