"""What a user names: ``CodecError``, a codec name parsed into a ``CodecSpec``, and the names
``CODECS`` lists as examples. The frame's kind and entropy codes are indexes into ``_KINDS``
and ``_ENTROPIES`` here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import TiercutError

class CodecError(TiercutError, ValueError):
    """A codec name, tensor or frame that cannot be encoded or decoded; the message names it."""


_FORMS = ("raw, fp16, bf16, q2..q8 (min-max quantization per tensor), q2-channel..q8-channel "
          "(per channel along dim 1), each optionally followed by +zstd or +lz4")
_KINDS = ("raw", "fp16", "bf16", "quant")
_ENTROPIES = (None, "zstd", "lz4")


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec name: what ``encode`` is asked to do (the frame says what it did)."""

    kind: str                   # "raw" | "fp16" | "bf16" | "quant"
    bits: int = 0               # 2..8 for "quant", 0 otherwise
    per_channel: bool = False   # quant only: one min/max pair per channel (dim 1, dim 0 if 1-D)
    entropy: str | None = None  # None | "zstd" | "lz4"

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

    @property
    def name(self) -> str:
        base = self.kind
        if self.kind == "quant":
            base = f"q{self.bits}{'-channel' if self.per_channel else ''}"
        return base + (f"+{self.entropy}" if self.entropy else "")

    @property
    def lossless(self) -> bool:
        return self.kind == "raw"


_NAME = re.compile(r"(raw|fp16|bf16|q([2-8])(-channel)?)(?:\+(zstd|lz4))?")


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
                         f"(for example {', '.join(CODECS)})")
    base, bits, channel, entropy = m.groups()
    if bits is None:
        return CodecSpec(base, entropy=entropy)
    return CodecSpec("quant", int(bits), channel is not None, entropy)


CODECS: tuple[str, ...] = (
    "raw", "raw+zstd", "raw+lz4", "fp16", "fp16+zstd", "bf16", "bf16+lz4",
    "q8", "q8+zstd", "q8-channel", "q8-channel+lz4", "q6", "q4", "q4+zstd", "q4-channel", "q3",
    "q2", "q2+lz4",
)


def _bad(field: str, value: object, accepted: str) -> CodecError:
    """The error for a frame field ``decode`` cannot accept: header, scales or payload."""
    return CodecError(f"codec frame: {field} is {value!r}; {accepted}")
