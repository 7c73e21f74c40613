"""The names users type for models: zoo entries, and ``module:factory`` paths.

Every zoo model is pure PyTorch, built with a fixed seed so two processes build the same
weights (no downloads); models that ship real weights load them in their factory.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import UnknownModelError
from .frames import SUFFIX, Normalized


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, its shape at batch 1, and how to make an example."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    high: int = 0  # integer inputs are drawn from [0, high); 0 means "float, normal(0, 1)"

    def example(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        shape = (batch, *self.shape[1:])
        gen = torch.Generator().manual_seed(seed)
        if self.dtype.is_floating_point:
            return torch.randn(shape, generator=gen, dtype=self.dtype)
        if self.high <= 1:  # masks and flags
            return torch.ones(shape, dtype=self.dtype)
        return torch.randint(0, self.high, shape, generator=gen, dtype=self.dtype)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    inputs: tuple[InputSpec, ...]
    summary: str
    # Published reference figures the zoo test checks against (None where there is none).
    params: int | None = None
    macs: float | None = None  # multiply-accumulates at batch 1, as torchvision/timm count them

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return self.factory().eval()

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        return tuple(spec.example(batch, seed=i) for i, spec in enumerate(self.inputs))


@dataclass(frozen=True)
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


_ZOO: dict[str, ZooEntry] = {}


def register(
    name: str,
    inputs: tuple[InputSpec, ...] | tuple[int, ...],
    summary: str,
    params: int | None = None,
    macs: float | None = None,
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: ``@register("resnet18", (1, 3, 224, 224), "ResNet-18", params=..., macs=...)``."""
    if inputs and isinstance(inputs[0], int):
        inputs = (InputSpec("x", tuple(inputs)),)  # type: ignore[arg-type]

    def wrap(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _ZOO:
            raise ValueError(f"zoo name {name!r} registered twice")
        _ZOO[name] = ZooEntry(name, factory, tuple(inputs), summary, params, macs)  # type: ignore[arg-type]
        return factory

    return wrap


def names() -> list[str]:
    _load_all()
    return sorted(_ZOO)


def entry(name: str) -> ZooEntry:
    """A zoo model by name; ``<image model>+frames`` takes 8-bit frames (``frames.py``)."""
    _load_all()
    if name.endswith(SUFFIX) and name[:-len(SUFFIX)] in _ZOO:
        return frames_entry(_ZOO[name[:-len(SUFFIX)]])
    try:
        return _ZOO[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; zoo models are: {', '.join(sorted(_ZOO))}, each image "
            f"model also as NAME{SUFFIX} (taking 8-bit frames), or give a "
            "'package.module:factory' path"
        ) from None


def resolve(spec: str, input_shape: tuple[int, ...] | None = None) -> ZooEntry:
    """A zoo name, or ``module:factory`` (the factory returns an ``nn.Module``).

    A user's factory has no registered input, so ``input_shape`` is required for it, unless the
    factory object carries an ``input_shape`` attribute.
    """
    if ":" not in spec:
        return entry(spec)
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(
            f"cannot load model factory {spec!r}: {exc}; expected 'package.module:callable' "
            "importable from the current environment"
        ) from None
    shape = input_shape or getattr(factory, "input_shape", None)
    if shape is None:
        raise UnknownModelError(
            f"model factory {spec!r} needs an input shape: pass --input-shape, e.g. 1,3,224,224"
        )
    return ZooEntry(spec, factory, (InputSpec("x", tuple(shape)),), f"user model {spec}")


def _load_all() -> None:
    # Importing the zoo package registers every model module it lists.
    importlib.import_module("tiercut.zoo")
