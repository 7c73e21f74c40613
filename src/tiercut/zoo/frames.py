"""Image models that take frames as a camera hands them over, ``<model>+frames``.

A camera gives 8-bit pixels; a model trained on ImageNet expects them normalised,
``(pixel / 255 - mean) / std`` per channel. ``resnet18+frames`` is ``resnet18`` that takes the
frame (values k / 255, which the ``u8`` input codec carries bit for bit) and normalises it as
its first nodes. The normalisation is then part of the graph, folded into whichever stage runs
first: on the device when the device computes, on the receiving tier when the device sends the
frame (as u8 pixels or a JPEG), and the planner counts it as it counts every node.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import UnknownModelError
from .registry import InputSpec, ZooEntry

SUFFIX = "+frames"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalized(nn.Module):
    """``model`` after the per-channel normalisation of its (N, C, H, W) input."""

    def __init__(self, model: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:  # noqa: ANN001
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


@dataclasses.dataclass(frozen=True)
class FrameInput(InputSpec):
    """An (N, C, H, W) frame of 8-bit pixels as k / 255: what the ``u8`` codec carries exactly."""

    def example(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        pixels = torch.randint(0, 256, (batch, *self.shape[1:]), generator=gen)
        return pixels.to(self.dtype) / 255


def frames_entry(base: ZooEntry) -> ZooEntry:
    """``base`` (one (N, 3, H, W) float input) taking frames: ``<name>+frames``."""
    first = base.inputs[0]
    if len(base.inputs) != 1 or len(first.shape) != 4 or first.shape[1] != 3 \
            or not first.dtype.is_floating_point:
        raise UnknownModelError(
            f"{base.name}{SUFFIX}: frames are (N, 3, H, W) images and {base.name!r} takes "
            f"{[tuple(s.shape) for s in base.inputs]}; '{SUFFIX}' fits the zoo's image models")
    factory = base.factory

    def build() -> nn.Module:
        return Normalized(factory())

    return ZooEntry(base.name + SUFFIX, build, (FrameInput(first.name, first.shape, first.dtype),),
                    f"{base.summary}, taking 8-bit frames (ImageNet normalisation as its first "
                    "nodes)", base.params, base.macs)
