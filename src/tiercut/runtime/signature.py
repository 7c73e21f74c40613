"""What a value crossing a link must look like (a tensor's shape and dtype, an int, ... or a
container of them): the layout records one per value, and the wire checks each value it
receives against it before anything runs on it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PlanError


@dataclass(frozen=True)
class Signature:
    """What a value crossing a link must look like: a tensor, an int, ... or a container."""

    kind: str  # "tensor", "int", "float", "bool", "none", "tuple", "list", "size"
    shape: tuple[int, ...] = ()
    dtype: str = ""
    items: tuple["Signature", ...] = ()

    def describe(self) -> str:
        if self.kind == "tensor":
            return f"tensor {list(self.shape)} {self.dtype}"
        if self.items or self.kind in ("tuple", "list", "size"):
            return f"{self.kind}({', '.join(i.describe() for i in self.items)})"
        return self.kind


def signature(value: Any) -> Signature:
    if isinstance(value, torch.Tensor):
        return Signature("tensor", tuple(value.shape), str(value.dtype).removeprefix("torch."))
    if isinstance(value, torch.Size):
        return Signature("size", items=tuple(Signature("int") for _ in value))
    if isinstance(value, bool):
        return Signature("bool")
    if isinstance(value, int):
        return Signature("int")
    if isinstance(value, float):
        return Signature("float")
    if value is None:
        return Signature("none")
    if isinstance(value, (tuple, list)):
        return Signature(type(value).__name__ if type(value) in (tuple, list) else "tuple",
                         items=tuple(signature(v) for v in value))
    raise PlanError(f"a value of type {type(value).__name__} cannot cross a link")
