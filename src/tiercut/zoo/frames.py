"""Image models that take frames as a camera hands them over, ``<model>+frames``.

A camera gives 8-bit pixels; a model trained on ImageNet expects them normalised,
``(pixel / 255 - mean) / std`` per channel. ``resnet18+frames`` is ``resnet18`` that takes the
frame (values k / 255, which the ``u8`` input codec carries bit for bit) and normalises it as
its first nodes. The normalisation is then part of the graph, folded into whichever stage runs
first: on the device when the device computes, on the receiving tier when the device sends the
frame (as u8 pixels or a JPEG), and the planner counts it as it counts every node. The
registry makes the entry (``registry.frames_entry``); this module holds the model.
"""
from __future__ import annotations

import torch
from torch import nn

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
