"""The names users type for models: zoo entries, and ``module:factory`` paths.

Every zoo model is pure PyTorch, built with a fixed seed so two processes build the same
weights (no downloads); models that ship real weights load them in their factory.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from ..errors import ExampleInputError, UnknownModelError
from .frames import SUFFIX, Normalized


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, its shape at batch 1, and how to make an example."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    # integer inputs are drawn from [low, high) (token ids: [0, vocab)); high <= 1 means ones
    # (masks, flags); a float input is normal(0, 1), or uniform in [low, high) when high > low
    high: int = 0
    low: int = 0

    def example(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        shape = (batch, *self.shape[1:])
        gen = torch.Generator().manual_seed(seed)
        if self.dtype.is_floating_point:
            if self.high > self.low:
                return torch.rand(shape, generator=gen, dtype=self.dtype) \
                    * (self.high - self.low) + self.low
            return torch.randn(shape, generator=gen, dtype=self.dtype)
        if self.high <= 1:  # masks and flags
            return torch.ones(shape, dtype=self.dtype)
        return torch.randint(self.low, self.high, shape, generator=gen, dtype=self.dtype)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    inputs: tuple[InputSpec, ...]
    summary: str
    # Published reference figures the zoo test checks against (None where there is none).
    params: int | None = None
    macs: float | None = None  # multiply-accumulates at batch 1, as torchvision/timm count them
    # submodules captured whole, one node each (a factory's ``leaf_modules`` attribute): every
    # tier traces the model with them, so plans and servers agree on the nodes
    leaf_modules: tuple = ()

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


_SCHEMES: dict[str, Callable[[str], ZooEntry]] = {}


def register_scheme(scheme: str, build: Callable[[str], ZooEntry]) -> None:
    """Model specs ``SCHEME:...`` built by ``build(spec)`` (``hf:gpt2``: ``hf.py``)."""
    _SCHEMES[scheme] = build


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


DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64,
          "int32": torch.int32, "bool": torch.bool}
INPUT_FORMAT = "NAME:SHAPE:DTYPE[:LOW-HIGH], e.g. input_ids:1x16:int64:0-30522"


def parse_input(text: str) -> InputSpec:
    """``--input NAME:SHAPE:DTYPE[:LOW-HIGH]``: shape with x (``1x16``), dtype one of
    ``DTYPES``, integer values drawn from [LOW, HIGH) (token ids); no range: ones for integer
    and bool inputs (masks), normal(0, 1) for floats."""
    def bad(why: str) -> ExampleInputError:
        return ExampleInputError(f"--input {text!r}: {why}; the form is {INPUT_FORMAT}")

    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise bad("give a name, a shape and a dtype separated by ':'")
    name, shape_text, dtype_text = parts[:3]
    if not name.isidentifier():
        raise bad(f"name {name!r} is not an identifier like input_ids")
    try:
        shape = tuple(int(d) for d in shape_text.lower().split("x"))
    except ValueError:
        raise bad(f"shape {shape_text!r} is not integers joined by x, like 1x16") from None
    if any(d < 1 for d in shape):
        raise bad(f"shape {shape_text!r} has a dimension < 1")
    if dtype_text not in DTYPES:
        raise bad(f"dtype {dtype_text!r} is not one of {', '.join(DTYPES)}")
    low = high = 0
    if len(parts) == 4:
        lo, sep, hi = parts[3].partition("-")
        try:
            low, high = int(lo), int(hi)
        except ValueError:
            sep = ""
        if not sep or high <= low:
            raise bad(f"range {parts[3]!r} is not LOW-HIGH with integers LOW < HIGH (values "
                      "are drawn from [LOW, HIGH))")
        if DTYPES[dtype_text] is torch.bool:
            raise bad("a bool input takes no range")
    return InputSpec(name, shape, DTYPES[dtype_text], high, low)


def as_inputs(items: object) -> tuple[InputSpec, ...]:
    """InputSpecs from InputSpecs, ``--input`` strings or ``(name, shape, dtype[, high])``
    tuples (dtype a torch.dtype or its name)."""
    out = []
    for item in items:  # type: ignore[attr-defined]
        if isinstance(item, InputSpec):
            out.append(item)
        elif isinstance(item, str):
            out.append(parse_input(item))
        elif isinstance(item, (tuple, list)) and len(item) in (3, 4):
            name, shape, dtype = item[:3]
            dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
            if not isinstance(dtype, torch.dtype):
                raise ExampleInputError(f"input {item!r}: dtype {item[2]!r} is not a torch "
                                        f"dtype nor one of {', '.join(DTYPES)}")
            out.append(InputSpec(str(name), tuple(int(d) for d in shape), dtype,
                                 int(item[3]) if len(item) == 4 else 0))
        else:
            raise ExampleInputError(f"input {item!r} is not an InputSpec, a {INPUT_FORMAT!r} "
                                    "string nor a (name, shape, dtype[, high]) tuple")
    return tuple(out)


def resolve(spec: str, input_shape: tuple[int, ...] | None = None,
            inputs: object = None) -> ZooEntry:
    """A zoo name, ``SCHEME:...`` (``hf:gpt2``: a transformers model from its config), or
    ``module:factory`` (the factory returns an ``nn.Module``).

    ``inputs`` (InputSpecs or ``--input`` strings) replace the model's own. A user's factory
    has no registered input: it takes ``inputs``, else ``input_shape`` (one float32 input),
    else the factory's own ``inputs`` attribute (a list of InputSpecs or of (name, shape,
    dtype[, high]) tuples), else its ``input_shape`` attribute.
    """
    given = as_inputs(inputs) if inputs else ()
    scheme = spec.partition(":")[0]
    _load_all()
    if ":" in spec and scheme in _SCHEMES:
        base = _SCHEMES[scheme](spec)
        return replace(base, inputs=given) if given else base
    if ":" not in spec:
        base = entry(spec)
        return replace(base, inputs=given) if given else base
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(
            f"cannot load model factory {spec!r}: {exc}; expected 'package.module:callable' "
            "importable from the current environment"
        ) from None
    if not given and input_shape is None and getattr(factory, "inputs", None):
        given = as_inputs(factory.inputs)
    if not given:
        shape = input_shape or getattr(factory, "input_shape", None)
        if shape is None:
            raise UnknownModelError(
                f"model factory {spec!r} needs its inputs: pass --input NAME:SHAPE:DTYPE (e.g. "
                "--input x:1x3x224x224:float32, repeatable) or --input-shape 1,3,224,224, or "
                "give the factory an `inputs` attribute"
            )
        given = (InputSpec("x", tuple(shape)),)
    return ZooEntry(spec, factory, given, f"user model {spec}",
                    leaf_modules=tuple(getattr(factory, "leaf_modules", ())))


def _load_all() -> None:
    # Importing the zoo package registers every model module it lists.
    importlib.import_module("tiercut.zoo")
