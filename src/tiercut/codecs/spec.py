"""What a user names: ``CodecError``, a codec name parsed into a ``CodecSpec``, and the names
``CODECS`` (any tensor) and ``IMAGE_CODECS`` (the model's input as a device has it) list as
examples. The frame's kind and entropy codes are indexes into ``_KINDS`` and ``_ENTROPIES``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import TiercutError


class CodecError(TiercutError, ValueError):
    """A codec name, tensor or frame that cannot be encoded or decoded; the message names it."""


_FORMS = ("raw, fp16, bf16, q2..q8 (min-max quantization per tensor), q2-channel..q8-channel "
          "(per channel along dim 1), u8 (8-bit pixels of the range 0..1), each optionally "
          "followed by +zstd or +lz4; or jpeg1..jpeg100, webp1..webp100 (quality) or png, image "
          "files of (N, C, H, W) tensors; u8, jpeg, webp and png take another range of values as "
          "@LO:HI, e.g. u8@0:255 or jpeg90@-1:1")
# the frame's kind codes, in this order: never reorder, only append
_KINDS = ("raw", "fp16", "bf16", "quant", "u8", "jpeg", "webp", "png")
PIXEL_KINDS = frozenset({"u8", "jpeg", "webp", "png"})  # values on a fixed range as 0..255
FILE_KINDS = frozenset({"jpeg", "webp", "png"})  # image files: no entropy stage
CHANNELS = {"jpeg": (1, 3), "webp": (1, 3), "png": (1, 3, 4)}  # C of the (N, C, H, W) accepted
_ENTROPIES = (None, "zstd", "lz4")


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec name: what ``encode`` is asked to do (the frame says what it did)."""

    kind: str                   # one of _KINDS: "raw", "fp16", "bf16", "quant", "u8", "jpeg"...
    bits: int = 0               # 2..8 for "quant", 0 otherwise
    per_channel: bool = False   # quant only: one min/max pair per channel (dim 1, dim 0 if 1-D)
    entropy: str | None = None  # None | "zstd" | "lz4"
    quality: int = 0            # jpeg and webp: 1..100; 0 otherwise
    value_range: tuple[float, float] | None = None  # pixel kinds: (lo, hi), default (0, 1)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise CodecError(f"codec kind {self.kind!r} is not one of {', '.join(_KINDS)}")
        if self.kind == "quant":
            bits = self.bits
            if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
                raise CodecError(f"quant codec bits {self.bits!r}: accepted 2..8")
        elif self.bits != 0 or self.per_channel:
            raise CodecError(f"codec {self.kind!r} takes no bits or per_channel "
                             f"(got bits={self.bits!r}, per_channel={self.per_channel!r})")
        if self.entropy not in _ENTROPIES:
            raise CodecError(f"codec entropy {self.entropy!r}: accepted None, 'zstd', 'lz4'")
        self._check_pixels()

    def _check_pixels(self) -> None:
        q = self.quality
        if self.kind in ("jpeg", "webp"):
            if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100:
                raise CodecError(f"{self.kind} quality {q!r}: accepted 1..100")
        elif q != 0:
            raise CodecError(f"codec {self.kind!r} takes no quality (got {q!r})")
        if self.kind in FILE_KINDS and self.entropy is not None:
            raise CodecError(f"{self.kind} is an image file, already compressed: it takes no "
                             f"+{self.entropy} (u8 does)")
        if self.kind not in PIXEL_KINDS:
            if self.value_range is not None:
                raise CodecError(f"codec {self.kind!r} takes no value range (u8, jpeg, webp "
                                 f"and png do), got {self.value_range!r}")
            return
        try:
            lo, hi = (float(v) for v in (self.value_range or (0.0, 1.0)))
        except (TypeError, ValueError):
            raise CodecError(f"{self.kind} value range {self.value_range!r}: accepted a pair "
                             "(LO, HI) of numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CodecError(f"{self.kind} value range {lo!r}:{hi!r}: accepted finite LO < HI")
        object.__setattr__(self, "value_range", (lo, hi))

    @property
    def name(self) -> str:
        base = self.kind + (str(self.quality) if self.quality else "")
        if self.kind == "quant":
            base = f"q{self.bits}{'-channel' if self.per_channel else ''}"
        if self.value_range not in (None, (0.0, 1.0)):
            base += "@" + ":".join(map(_number, self.value_range))
        return base + (f"+{self.entropy}" if self.entropy else "")

    @property
    def lossless(self) -> bool:
        return self.kind == "raw"


def _number(v: float) -> str:
    """The shortest text that reads back as v: 0, 255, -1.5, 0.1."""
    text = f"{v:g}"
    return text if float(text) == v else repr(v)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_NAME = re.compile(rf"(raw|fp16|bf16|q([2-8])(-channel)?|u8|(jpeg|webp)(\d{{1,3}})|png)"
                   rf"(?:@({_NUM}):({_NUM}))?(?:\+(zstd|lz4))?")


def parse_codec(name: str) -> CodecSpec:
    """``"raw"``, ``"fp16"``, ``"q4-channel+zstd"``... -> CodecSpec; anything else -> CodecError."""
    if not isinstance(name, str):
        raise CodecError(f"codec name must be a str, got {type(name).__name__} {name!r}; "
                         f"accepted: {_FORMS}")
    return _parse(name)


@lru_cache(maxsize=256)
def _parse(name: str) -> CodecSpec:
    m = _NAME.fullmatch(name.strip().lower())
    if m is None:
        raise CodecError(f"unknown codec {name!r}; accepted: {_FORMS} "
                         f"(for example {', '.join(CODECS + IMAGE_CODECS)})")
    base, bits, channel, image, quality, lo, hi, entropy = m.groups()
    kind = "quant" if bits is not None else image or base
    value_range = (float(lo), float(hi)) if lo is not None else None
    if value_range is not None and kind not in PIXEL_KINDS:
        raise CodecError(f"codec {name!r}: only u8, jpeg, webp and png take a value range "
                         f"@LO:HI; accepted: {_FORMS}")
    return CodecSpec(kind, int(bits or 0), channel is not None, entropy,
                     int(quality or 0), value_range)


CODECS: tuple[str, ...] = (
    "raw", "raw+zstd", "raw+lz4", "fp16", "fp16+zstd", "bf16", "bf16+lz4",
    "q8", "q8+zstd", "q8-channel", "q8-channel+lz4", "q6", "q4", "q4+zstd", "q4-channel", "q3",
    "q2", "q2+lz4",
)
# the model's input as a device has it: (N, C, H, W) images of values in 0..1 (or 8-bit pixels)
IMAGE_CODECS: tuple[str, ...] = ("u8", "u8+zstd", "u8@0:255", "jpeg75", "jpeg90", "webp80", "png")


def _bad(field: str, value: object, accepted: str) -> CodecError:
    """The error for a frame field ``decode`` cannot accept: header, scales or payload."""
    return CodecError(f"codec frame: {field} is {value!r}; {accepted}")
