"""How a tensor crosses a link: one self-describing binary frame per tensor.

``encode(tensor, codec) -> bytes`` and ``decode(frame, limits) -> tensor``. A codec is a value
stage (raw, fp16, bf16, c-bit min-max quantization per tensor or per channel, or u8 pixels of a
fixed range) followed by an optional lossless entropy stage (zstd or lz4), or one image file per
image (jpeg, webp, png: see ``image``). The frame layout is documented byte by byte in
docs/codecs.md. ``decode`` checks every header field against ``Limits`` and for consistency
before it allocates anything, and raises ``CodecError`` (never anything else) for a frame it
cannot accept. Nothing is pickled. ``max_error`` is the documented bound on a lossy codec's
error.
"""
from __future__ import annotations

import struct
import sys

import numpy as np
import torch

from .entropy import _compress, _decompress
from .frame import (_DTYPE_CODE, _DTYPES, _ENTROPY_CODE, _FLAG_PER_CHANNEL, _HEADER, _KIND_CODE,
                    _MAGIC, _VERSION, DEFAULT_LIMITS, Limits, _Header, _header, _view)
from .quant import _channels, _check_range, _minmax, _pack, _quantize, _step, _unpack
from . import image
from .spec import FILE_KINDS, PIXEL_KINDS, CodecError, CodecSpec, _bad, parse_codec

# Per output dtype: (relative, absolute) rounding of the final cast, used by the quant bound.
_OUT_ROUNDING = {torch.float32: (0.0, 2.0**-126), torch.float64: (0.0, 2.0**-126),
                 torch.float16: (2.0**-11, 2.0**-24), torch.bfloat16: (2.0**-8, 2.0**-126)}


# ---- encode ----------------------------------------------------------------------------
def encode(tensor: torch.Tensor, codec: str | CodecSpec = "raw") -> bytes:
    """One self-describing frame (header, scales, payload) holding ``tensor``."""
    spec = codec if isinstance(codec, CodecSpec) else parse_codec(codec)
    x = _prepare(tensor)
    kind, bits, per_channel = _effective(spec, x)
    scales = b""
    if kind in PIXEL_KINDS:
        scales, payload = _encode_pixels(kind, bits, spec.value_range, x)
    elif kind == "raw":
        payload = _as_bytes(x)
    elif kind in ("fp16", "bf16"):
        _check_range(x, kind)
        payload = _as_bytes(x.to(torch.float16 if kind == "fp16" else torch.bfloat16))
    else:
        xf, lo, hi = _minmax(x, per_channel)
        scales = torch.stack((lo, hi), dim=1).numpy().astype("<f4").tobytes()
        payload = _pack(_quantize(xf, lo, hi, bits), bits)
    n_scales = len(scales) // 8
    if spec.entropy is not None and payload.nbytes:  # an empty payload is stored empty
        payload = _compress(spec.entropy, payload)
    header = _HEADER.pack(_MAGIC, _VERSION, _DTYPE_CODE[x.dtype], _KIND_CODE[kind], bits,
                          _FLAG_PER_CHANNEL if per_channel else 0, _ENTROPY_CODE[spec.entropy],
                          x.ndim, 0, n_scales, memoryview(payload).nbytes)
    return b"".join((header, struct.pack(f"<{x.ndim}Q", *x.shape), scales, payload))


def _encode_pixels(kind: str, quality: int, value_range: tuple[float, float],
                   x: torch.Tensor) -> tuple[bytes, bytes | np.ndarray]:
    """The range as one float32 (lo, hi) pair (none for uint8 pixels), and u8 codes or files."""
    scales, lo, hi = _pixel_range(kind, value_range, x)
    pixels = image.to_pixels(x, kind, lo, hi)
    if kind == "u8":
        return scales, pixels.reshape(-1)
    return scales, image.encode_files(kind, quality, pixels)


def _pixel_range(kind: str, value_range: tuple[float, float], x: torch.Tensor
                 ) -> tuple[bytes, float, float]:
    """The frame's scale pair and the range as float32: encoder and decoder both map values
    with the float32 range, so they agree. Image files: the shape is checked first."""
    if kind in FILE_KINDS:
        image.check_shape(kind, tuple(x.shape))
    if x.dtype == torch.uint8:
        return b"", 0.0, 255.0
    scales = struct.pack("<2f", *value_range)
    lo, hi = struct.unpack("<2f", scales)
    if not lo < hi:  # distinct doubles can round to one float32
        raise CodecError(f"{kind} value range {value_range[0]!r}:{value_range[1]!r} is empty "
                         f"in float32; accepted LO < HI as float32")
    return scales, lo, hi


def _prepare(tensor: torch.Tensor) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise CodecError(f"encode takes a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _DTYPE_CODE:
        names = ", ".join(str(d).removeprefix("torch.") for d in _DTYPE_CODE)
        raise CodecError(f"tensor dtype {tensor.dtype} has no codec; supported: {names}")
    if tensor.layout != torch.strided:
        raise CodecError(f"tensor layout {tensor.layout} has no codec; call .to_dense() first")
    if tensor.ndim > 255:
        raise CodecError(f"tensor has {tensor.ndim} dims; a frame holds at most 255")
    return tensor.detach().cpu().resolve_neg().contiguous()


def _effective(spec: CodecSpec, x: torch.Tensor) -> tuple[str, int, bool]:
    """What is actually done: lossy codecs on integer, bool or empty tensors (but for image
    files of uint8 pixels), and fp16/bf16 on a 16-bit float tensor (nothing to save), are raw
    (the entropy stage still applies). For pixel kinds the bits field holds the quality."""
    pixels = x.dtype == torch.uint8 and spec.kind in FILE_KINDS  # a camera's frame, as it is
    if (spec.kind == "raw" or not (x.is_floating_point() or pixels) or x.numel() == 0
            or (spec.kind in ("fp16", "bf16") and x.itemsize == 2)):
        return "raw", 0, False
    if spec.kind in PIXEL_KINDS:
        return spec.kind, spec.quality, False
    return spec.kind, spec.bits, spec.per_channel and x.ndim >= 1


def _as_bytes(x: torch.Tensor) -> np.ndarray:
    """The tensor's memory as a flat uint8 array, little-endian, without a copy where possible."""
    _, move, np_dtype = _DTYPES[_DTYPE_CODE[x.dtype]]
    arr = x.view(move).numpy().reshape(-1)
    if sys.byteorder == "big":
        arr = arr.astype(np_dtype)
    return arr.view(np.uint8)


# ---- decode ----------------------------------------------------------------------------
def decode(frame: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> torch.Tensor:
    """The tensor in ``frame``, in its original dtype and shape, writable and owning its memory.

    Every header field is checked against ``limits`` and for consistency before anything is
    allocated; any frame that cannot be accepted raises CodecError naming the field."""
    mv = _view(frame)
    h = _header(mv, limits)
    lo = hi = None
    if h.n_scales:
        pairs = np.frombuffer(mv, "<f4", count=2 * h.n_scales, offset=h.scales_at).reshape(-1, 2)
        if not np.isfinite(pairs).all():
            raise _bad("scales", f"{int((~np.isfinite(pairs)).sum())} nan/inf", "scales are finite")
        if (pairs[:, 0] > pairs[:, 1]).any():
            raise _bad("scales", "min > max", "each pair is (min, max) with min <= max")
        lo = torch.from_numpy(pairs[:, 0].astype(np.float32))
        hi = torch.from_numpy(pairs[:, 1].astype(np.float32))
    data = mv[h.scales_at + 8 * h.n_scales:]
    try:
        if h.entropy is not None and h.raw_size:
            data = _decompress(h.entropy, data, h.raw_size)
        if h.kind in PIXEL_KINDS:
            return _build_pixels(h, data, lo, hi)
        return _build(h, data, lo, hi)
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as RuntimeError
        raise CodecError(f"codec frame: decoding {h.numel} x {h.dtype} failed for want of memory "
                         f"({exc}); lower Limits.max_elements to refuse such frames") from None


def _build_pixels(h: _Header, data: bytes | memoryview, lo: torch.Tensor | None,
                  hi: torch.Tensor | None) -> torch.Tensor:
    low, high = (0.0, 255.0) if lo is None else (float(lo[0]), float(hi[0]))  # uint8: no pair
    if not low < high:
        raise _bad("scales", (low, high), f"{h.kind}'s range has min < max")
    if h.kind == "u8":
        codes = np.frombuffer(data, np.uint8, count=h.numel).reshape(h.shape)
    else:
        codes = image.decode_files(h.kind, memoryview(data), h.shape)
    return image.from_pixels(codes, h.dtype, low, high)


def _build(h: _Header, data: bytes | memoryview, lo: torch.Tensor | None,
           hi: torch.Tensor | None) -> torch.Tensor:
    kind, dtype, shape, numel, bits = h.kind, h.dtype, h.shape, h.numel, h.bits
    if kind == "raw":
        if numel and dtype != torch.bool and sys.byteorder == "little":
            # the single copy, into memory the tensor then owns: two torch calls, where the
            # numpy route below takes six (most of a small tensor's decode when it runs cold)
            return torch.frombuffer(bytearray(data), dtype=dtype).view(shape)
        _, move, np_dtype = _DTYPES[_DTYPE_CODE[dtype]]
        src = np.frombuffer(data, np_dtype, count=numel)
        if dtype == torch.bool and numel and src.max() > 1:
            raise _bad("bool payload", int(src.max()), "bool bytes are 0 or 1")
        out = torch.empty(shape, dtype=dtype)
        np.copyto(out.view(move).numpy().reshape(-1), src)  # the single copy
        return out
    if kind in ("fp16", "bf16"):
        half = torch.float16 if kind == "fp16" else torch.bfloat16
        out = torch.empty(shape, dtype=half)
        src = np.frombuffer(data, "<i2", count=numel)
        np.copyto(out.view(torch.int16).numpy().reshape(-1), src)
        return out.to(dtype)
    work, step = _step(lo, hi, bits)
    y = torch.from_numpy(_unpack(data, bits, numel).astype(np.float32 if work == torch.float32
                                                              else np.float64))
    if h.per_channel:
        y = y.reshape(_channels(shape))
        lo, step = lo.reshape(1, -1, 1), step.reshape(1, -1, 1)
    y.mul_(step).add_(lo.to(work))
    return y.to(dtype).reshape(shape)


# ---- the bound -------------------------------------------------------------------------
def max_error(spec: CodecSpec | str, tensor: torch.Tensor) -> float:
    """The documented bound on max |decode(encode(tensor, spec)) - tensor| over finite values.

    0.0 where the codec is lossless for this tensor; raises CodecError where encode would."""
    spec = spec if isinstance(spec, CodecSpec) else parse_codec(spec)
    x = _prepare(tensor)
    kind, bits, per_channel = _effective(spec, x)
    if kind == "raw":
        return 0.0
    if kind in PIXEL_KINDS:
        _, lo, hi = _pixel_range(kind, spec.value_range, x)
        image.to_pixels(x, kind, lo, hi)  # raises where encode would: values out of range
        return image.pixel_bound(kind, x.dtype, lo, hi, *_OUT_ROUNDING.get(x.dtype, (0, 0)))
    if kind in ("fp16", "bf16"):
        _check_range(x, kind)
        finite = x[torch.isfinite(x)]
        m = float(finite.abs().max()) if finite.numel() else 0.0
        rel, absolute = (2.0**-11, 2.0**-25) if kind == "fp16" else (2.0**-8, 2.0**-134)
        if x.dtype == torch.float64:  # rounded to float32 on the way
            rel += 2.0**-23
        return rel * m + absolute
    _, lo, hi = _minmax(x, per_channel)
    lo64, hi64 = lo.double(), hi.double()
    rel, absolute = _OUT_ROUNDING[x.dtype]
    half_step = (hi64 - lo64) / (2 * (2**bits - 1))
    bound = half_step + (2.0**-19 + rel) * torch.maximum(lo64.abs(), hi64.abs()) + absolute
    return float(bound.max())
