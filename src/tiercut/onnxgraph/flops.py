"""Op kinds and FLOP estimates for ONNX nodes, from the shapes shape inference fixed.

Counted as ``tiercut.graph.flops`` counts torch nodes (a multiply-add is two FLOPs): Conv,
ConvTranspose, Gemm and MatMul by their multiply-accumulates, pooling by window size, norms
and activations by a few FLOPs per output element, data movement as free.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

Shape = Sequence[int]

_KINDS = {"Gemm": "linear", "MatMul": "matmul", "BatchNormalization": "batch_norm",
          "LayerNormalization": "layer_norm", "GroupNormalization": "group_norm",
          "GlobalAveragePool": "adaptive_avg_pool2d", "GlobalMaxPool": "adaptive_max_pool2d",
          "Softmax": "softmax", "LogSoftmax": "log_softmax", "Gelu": "gelu", "Erf": "erf",
          "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish",
          "HardSigmoid": "hardsigmoid", "Concat": "cat", "Flatten": "flatten",
          "Reshape": "reshape", "Transpose": "permute", "Identity": "identity",
          "Dropout": "dropout", "Gather": "getitem", "Slice": "slice", "Squeeze": "squeeze",
          "Unsqueeze": "unsqueeze", "Expand": "expand", "Split": "split", "Shape": "size",
          "Cast": "to", "ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "amax"}
FREE = frozenset({"cat", "flatten", "reshape", "permute", "identity", "dropout", "getitem",
                  "slice", "squeeze", "unsqueeze", "expand", "split", "size", "to", "pad",
                  "tile", "gather_elements", "scatter_nd", "constant_of_shape", "range",
                  "depth_to_space", "space_to_depth", "resize", "non_zero", "where", "topk"})
_PER_ELEMENT = {"batch_norm": 2, "instance_normalization": 5, "layer_norm": 5, "group_norm": 5,
                "softmax": 5, "log_softmax": 5, "gelu": 8, "erf": 8, "sigmoid": 4, "tanh": 4,
                "hardswish": 3, "hardsigmoid": 2, "fused_conv": 1}


def op_kind(op_type: str, domain: str, input_rank: int) -> str:
    """tiercut's normalised kind: ``conv2d``, ``linear``, ``matmul``, ``relu``, ..."""
    if op_type in ("Conv", "ConvTranspose") and input_rank >= 3:
        suffix = "_transpose" if op_type == "ConvTranspose" else ""
        return f"conv{input_rank - 2}d{suffix}"
    if op_type in ("MaxPool", "AveragePool") and input_rank >= 3:
        return f"{'max' if op_type == 'MaxPool' else 'avg'}pool{input_rank - 2}d"
    kind = _KINDS.get(op_type) or re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", op_type).lower()
    return kind if domain in ("", "ai.onnx") else f"{domain}.{kind}"


def estimate(kind: str, op_type: str, inputs: Sequence[Shape | None], outputs: Sequence[Shape],
             attrs: Mapping[str, object]) -> int:
    """FLOPs of one ONNX node from its input shapes (None: unknown), output shapes, attributes."""
    out = math.prod(outputs[0]) if outputs else 0
    if kind in FREE:
        return 0
    if op_type == "Conv" and len(inputs) > 1 and inputs[1]:
        return 2 * out * math.prod(inputs[1][1:])  # weight (C_out, C_in/groups, *kernel)
    if op_type == "ConvTranspose" and len(inputs) > 1 and inputs[1] and inputs[0]:
        w = inputs[1]  # (C_in, C_out/groups, *kernel): each input element spreads one slice
        return 2 * math.prod(inputs[0]) * math.prod(w[1:])
    if op_type == "Gemm" and inputs and inputs[0]:
        k = inputs[0][0] if attrs.get("transA") else inputs[0][-1]
        return 2 * out * k
    if op_type in ("MatMul", "MatMulInteger") and inputs and inputs[0]:
        return 2 * out * inputs[0][-1]
    if op_type in ("MaxPool", "AveragePool", "LpPool"):
        kernel = attrs.get("kernel_shape") or ()
        return out * math.prod(kernel)  # type: ignore[arg-type]
    if op_type.startswith(("Global", "Reduce")):
        return max(math.prod(inputs[0]) if inputs and inputs[0] else 0, out)
    if kind in _PER_ELEMENT:
        return _PER_ELEMENT[kind] * out
    return out  # elementwise arithmetic and activations: one FLOP per output element
