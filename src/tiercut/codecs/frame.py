"""The frame's header: its layout (byte by byte in docs/codecs.md), the dtype, kind and entropy
codes, and ``Limits``, what ``decode`` accepts. ``_header`` checks every field against the
limits and for consistency with the frame before anything is allocated.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .entropy import _LZ4_MAX
from .quant import _channels
from .spec import (_ENTROPIES, _KINDS, CHANNELS, FILE_KINDS, PIXEL_KINDS, CodecError,
                   _bad)

# magic, version, dtype, kind, bits, flags, entropy, ndim, reserved, n_scales, payload_len;
# then ndim uint64 dims, n_scales float32 (min, max) pairs, payload. Little-endian.
_HEADER = struct.Struct("<4sBBBBBBBBIQ")
_MAGIC = b"TCUT"
_VERSION = 1
_FLAG_PER_CHANNEL = 1
# code -> (dtype, dtype the bytes are moved as in torch, numpy little-endian dtype of those)
_DTYPES = {
    1: (torch.float32, torch.float32, "<f4"), 2: (torch.float64, torch.float64, "<f8"),
    3: (torch.float16, torch.float16, "<f2"), 4: (torch.bfloat16, torch.int16, "<i2"),
    5: (torch.int64, torch.int64, "<i8"), 6: (torch.int32, torch.int32, "<i4"),
    7: (torch.int16, torch.int16, "<i2"), 8: (torch.int8, torch.int8, "<i1"),
    9: (torch.uint8, torch.uint8, "<u1"), 10: (torch.bool, torch.uint8, "<u1"),
}
_DTYPE_CODE = {dt: code for code, (dt, _, _) in _DTYPES.items()}
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
_ENTROPY_CODE = {e: i for i, e in enumerate(_ENTROPIES)}


@dataclass(frozen=True)
class Limits:
    """What ``decode`` accepts: checked against the header before anything is allocated."""

    max_elements: int = 1 << 28
    max_bytes: int = 1 << 30  # of an encoded frame
    max_ndim: int = 8


DEFAULT_LIMITS = Limits()


class _Header(NamedTuple):
    dtype: torch.dtype
    kind: str
    bits: int
    per_channel: bool
    entropy: str | None
    shape: tuple[int, ...]
    numel: int
    n_scales: int
    scales_at: int  # offset of the scales; the payload follows them
    raw_size: int  # payload bytes before the entropy stage


def _header(mv: memoryview, limits: Limits) -> _Header:
    """Every header field, checked against limits and for consistency with the frame."""
    total = mv.nbytes
    if total > limits.max_bytes:
        raise _bad("frame length", total, f"accepted at most Limits.max_bytes = {limits.max_bytes}")
    if total < _HEADER.size:
        raise _bad("frame length", total, f"a frame has at least the {_HEADER.size}-byte header")
    (magic, version, dtype_code, kind_code, bits, flags, entropy_code, ndim, reserved,
     n_scales, payload_len) = _HEADER.unpack_from(mv, 0)
    if magic != _MAGIC:
        raise _bad("magic", magic, f"expected {_MAGIC!r} (not a tiercut codec frame)")
    if version != _VERSION:
        raise _bad("version", version, f"this tiercut reads version {_VERSION}")
    if dtype_code not in _DTYPES:
        raise _bad("dtype code", dtype_code, f"known codes are 1..{len(_DTYPES)}")
    if kind_code >= len(_KINDS):
        raise _bad("codec kind", kind_code,
                   f"known codes are 0..{len(_KINDS) - 1} ({', '.join(_KINDS)})")
    if entropy_code >= len(_ENTROPIES):
        raise _bad("entropy code", entropy_code, "known codes are 0 (none), 1 (zstd), 2 (lz4)")
    if flags & ~_FLAG_PER_CHANNEL or reserved:
        raise _bad("flags/reserved", (flags, reserved), "only flag bit 0 (per channel) is defined")
    dtype = _DTYPES[dtype_code][0]
    kind, entropy = _KINDS[kind_code], _ENTROPIES[entropy_code]
    per_channel = bool(flags & _FLAG_PER_CHANNEL)
    if kind in PIXEL_KINDS:
        _pixel_fields(kind, dtype, bits, per_channel, entropy)
    elif kind == "quant" and not 2 <= bits <= 8:
        raise _bad("bits", bits, "quant codes have 2..8 bits")
    elif kind != "quant" and (bits or per_channel):
        raise _bad("bits/per-channel", (bits, per_channel), f"codec {kind} takes neither")
    elif kind != "raw" and (not dtype.is_floating_point or kind != "quant" and dtype.itemsize == 2):
        raise _bad("codec kind", kind, f"not applied to {dtype} (the encoder writes raw)")
    if ndim > limits.max_ndim:
        raise _bad("ndim", ndim, f"accepted at most Limits.max_ndim = {limits.max_ndim}")
    scales_at = _HEADER.size + 8 * ndim
    if total < scales_at:
        raise _bad("frame length", total, f"{ndim} dims need at least {scales_at} bytes")
    shape = struct.unpack_from(f"<{ndim}Q", mv, _HEADER.size)
    numel = 1
    for d in shape:  # Python ints: no overflow
        if d > limits.max_elements:
            raise _bad("dim", d, f"accepted at most Limits.max_elements = {limits.max_elements}")
        numel *= d
    if numel > limits.max_elements:
        raise _bad("number of elements", numel,
                   f"shape {shape}; accepted at most Limits.max_elements = {limits.max_elements}")
    if kind == "quant" and (numel == 0 or (per_channel and ndim == 0)) \
            or kind in PIXEL_KINDS and numel == 0:
        raise _bad("codec kind", kind, f"not applied to shape {shape} (the encoder writes raw)")
    if kind in FILE_KINDS and (ndim != 4 or shape[1] not in CHANNELS[kind]):
        raise _bad("shape", shape, f"{kind} holds (N, C, H, W) images with C in {CHANNELS[kind]}")
    want_scales = (_channels(shape)[1] if per_channel else 1) if kind == "quant" else 0
    if kind in PIXEL_KINDS:  # the value range (lo, hi) of a float image; none for uint8 pixels
        want_scales = int(dtype.is_floating_point)
    if n_scales != want_scales:
        raise _bad("scale count", n_scales, f"{kind}{' per channel' if per_channel else ''} "
                                            f"of shape {shape} has {want_scales}")
    if payload_len != total - scales_at - 8 * n_scales:
        raise _bad("payload length", payload_len, f"the frame holds "
                   f"{total - scales_at - 8 * n_scales} bytes after the header and scales")
    raw_size = {"raw": numel * dtype.itemsize, "fp16": numel * 2, "bf16": numel * 2,
                "quant": (numel * bits + 7) // 8}.get(kind, numel)  # pixel kinds: 1 byte each
    # image files have lengths of their own: image.decode_files checks them
    if kind not in FILE_KINDS and (entropy is None or raw_size == 0) and payload_len != raw_size:
        raise _bad("payload length", payload_len, f"{kind} of {numel} x {dtype} takes {raw_size}")
    if entropy is not None and raw_size and not payload_len:
        raise _bad("payload length", payload_len, f"a {entropy} payload is never empty")
    if entropy == "lz4" and raw_size > _LZ4_MAX:
        raise _bad("payload size", raw_size, f"an lz4 block holds at most {_LZ4_MAX} bytes")
    return _Header(dtype, kind, bits, per_channel, entropy, shape, numel, n_scales, scales_at,
                   raw_size)


def _pixel_fields(kind: str, dtype: torch.dtype, bits: int, per_channel: bool,
                  entropy: str | None) -> None:
    """u8 of float tensors; jpeg, webp and png of float or uint8 ones, quality in bits."""
    if kind == "u8" and not dtype.is_floating_point or kind in FILE_KINDS and not (
            dtype.is_floating_point or dtype == torch.uint8):
        raise _bad("codec kind", kind, f"not applied to {dtype} (the encoder writes raw)")
    if per_channel or (bits != 0 if kind in ("u8", "png") else not 1 <= bits <= 100):
        raise _bad("bits/per-channel", (bits, per_channel),
                   f"{kind} takes {'a quality 1..100' if kind in ('jpeg', 'webp') else 'no bits'}"
                   " and no per-channel flag")
    if kind in FILE_KINDS and entropy is not None:
        raise _bad("entropy code", entropy, f"{kind} is an image file: it takes none")


def _view(frame: bytes | bytearray | memoryview) -> memoryview:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise CodecError(f"decode takes bytes, bytearray or memoryview, got {type(frame).__name__}")
    mv = memoryview(frame)
    if not mv.c_contiguous:
        raise CodecError("decode takes a contiguous buffer; got a strided memoryview")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
