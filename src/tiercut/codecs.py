"""How a tensor crosses a link: one self-describing binary frame per tensor.

``encode(tensor, codec) -> bytes`` and ``decode(frame, limits) -> tensor``. A codec is a value
stage (raw, fp16, bf16, or c-bit min-max quantization per tensor or per channel) followed by an
optional lossless entropy stage (zstd or lz4). The frame layout is documented byte by byte in
docs/codecs.md. ``decode`` checks every header field against ``Limits`` and for consistency
before it allocates anything, and raises ``CodecError`` (never anything else) for a frame it
cannot accept. Nothing is pickled.
"""
from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import lz4.block
import numpy as np
import torch
import zstandard

from .errors import TiercutError


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


@dataclass(frozen=True)
class Limits:
    """What ``decode`` accepts: checked against the header before anything is allocated."""

    max_elements: int = 1 << 28
    max_bytes: int = 1 << 30  # of an encoded frame
    max_ndim: int = 8


DEFAULT_LIMITS = Limits()

# ---- the frame -------------------------------------------------------------------------
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
_FP16_MAX = 65504.0
_BF16_MAX = 3.3895313892515355e38  # (2 - 2**-7) * 2**127
_LZ4_MAX = 0x7E000000  # LZ4_MAX_INPUT_SIZE
# Per output dtype: (relative, absolute) rounding of the final cast, used by the quant bound.
_OUT_ROUNDING = {torch.float32: (0.0, 2.0**-126), torch.float64: (0.0, 2.0**-126),
                 torch.float16: (2.0**-11, 2.0**-24), torch.bfloat16: (2.0**-8, 2.0**-126)}


def _bad(field: str, value: object, accepted: str) -> CodecError:
    return CodecError(f"codec frame: {field} is {value!r}; {accepted}")


# ---- encode ----------------------------------------------------------------------------
def encode(tensor: torch.Tensor, codec: str | CodecSpec = "raw") -> bytes:
    """One self-describing frame (header, scales, payload) holding ``tensor``."""
    spec = codec if isinstance(codec, CodecSpec) else parse_codec(codec)
    x = _prepare(tensor)
    kind, bits, per_channel = _effective(spec, x)
    scales = b""
    if kind == "raw":
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
    """What is actually done: lossy codecs on integer, bool or empty tensors, and fp16/bf16 on
    a 16-bit float tensor (nothing to save), are raw (the entropy stage still applies)."""
    if (spec.kind == "raw" or not x.is_floating_point() or x.numel() == 0
            or (spec.kind in ("fp16", "bf16") and x.itemsize == 2)):
        return "raw", 0, False
    return spec.kind, spec.bits, spec.per_channel and x.ndim >= 1


def _as_bytes(x: torch.Tensor) -> np.ndarray:
    """The tensor's memory as a flat uint8 array, little-endian, without a copy where possible."""
    _, move, np_dtype = _DTYPES[_DTYPE_CODE[x.dtype]]
    arr = x.view(move).numpy().reshape(-1)
    if sys.byteorder == "big":
        arr = arr.astype(np_dtype)
    return arr.view(np.uint8)


def _check_range(x: torch.Tensor, kind: str) -> None:
    """fp16 and bf16 carry nan and inf, and finite values within their range (x is float32/64)."""
    limit = _FP16_MAX if kind == "fp16" else _BF16_MAX
    lo, hi = (float(v) for v in torch.aminmax(x))
    if -limit <= lo and hi <= limit:  # the fast path; nan fails both tests
        return
    over = torch.isfinite(x) & (x.abs() > limit)
    count = int(over.sum())
    if count:
        largest = float(x.abs()[over].max())
        raise CodecError(f"{kind} holds finite values within ±{limit:g}: the tensor has {count} "
                         f"value(s) beyond (largest |x| = {largest:g}); use "
                         f"{'bf16, ' if kind == 'fp16' else ''}raw or a quant codec")


def _channels(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(before, channels, after) for per-channel codecs: channels are dim 1, or dim 0 if 1-D."""
    if len(shape) == 1:
        return 1, shape[0], 1
    after = 1
    for d in shape[2:]:
        after *= d
    return shape[0], shape[1], after


def _minmax(x: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The values as float32 (shaped for broadcasting) and each group's min and max."""
    xf = x.to(torch.float32)
    if per_channel:
        xf = xf.reshape(_channels(tuple(x.shape)))
        lo, hi = xf.amin(dim=(0, 2)), xf.amax(dim=(0, 2))
    else:
        xf = xf.reshape(-1)
        lo, hi = (v.reshape(1) for v in torch.aminmax(xf))
    if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
        bad = int((~torch.isfinite(xf)).sum())
        raise CodecError(f"quantization needs finite values: the tensor has {bad} nan/inf value(s) "
                         f"(float64 values beyond float32's ±3.4e38 count as inf); use raw, fp16 "
                         f"or bf16 for it")
    return xf, lo, hi


def _step(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.dtype, torch.Tensor]:
    """The working dtype and each group's step (hi - lo) / (2^bits - 1), 1 where hi == lo.

    float32 unless a span is tiny (< 2^-100) or a bound is huge (> 2^125), where float32
    arithmetic would under- or overflow; then float64. Encoder and decoder decide alike."""
    lo64, hi64 = lo.double(), hi.double()
    span = hi64 - lo64
    fast = bool((((span == 0) | (span >= 2.0**-100)) & (torch.maximum(lo64.abs(), hi64.abs())
                                                          <= 2.0**125)).all())
    work = torch.float32 if fast else torch.float64
    step = torch.where(span > 0, span / (2**bits - 1), torch.ones_like(span))
    return work, step.to(work)


def _quantize(xf: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> np.ndarray:
    work, step = _step(lo, hi, bits)
    if xf.ndim == 3:  # per channel: (before, channels, after)
        lo, step = lo.reshape(1, -1, 1), step.reshape(1, -1, 1)
    t = xf.to(work) - lo.to(work)  # a new tensor: the caller's is never written
    t.mul_(1.0 / step).round_().clamp_(0, 2**bits - 1)
    return t.to(torch.uint8).numpy().reshape(-1)


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """c-bit codes as a little-endian bit stream: code i is bits i*c .. i*c+c-1."""
    n = codes.size
    if bits == 8:
        return codes
    nbytes = (n * bits + 7) // 8
    if 8 % bits == 0:  # 2 and 4 bits: whole codes per byte, in uint8
        k = 8 // bits
        c = np.zeros(nbytes * k, np.uint8)
        c[:n] = codes
        c = c.reshape(nbytes, k)
        out = c[:, 0].copy()
        for j in range(1, k):
            out |= c[:, j] << (bits * j)
        return out
    groups = -(-n // 8)  # 8 codes fill exactly `bits` bytes of one uint64 word
    c = np.zeros((groups, 8), np.uint8)
    c.reshape(-1)[:n] = codes
    words = c[:, 0].astype(np.uint64)
    for j in range(1, 8):
        words |= c[:, j].astype(np.uint64) << np.uint64(bits * j)
    stream = words.astype("<u8").view(np.uint8).reshape(groups, 8)[:, :bits]
    return stream.reshape(-1)[:nbytes].copy()


def _unpack(data: bytes | memoryview, bits: int, n: int) -> np.ndarray:
    raw = np.frombuffer(data, np.uint8)
    if bits == 8:
        return raw
    mask = (1 << bits) - 1
    if 8 % bits == 0:
        k = 8 // bits
        out = np.empty((raw.size, k), np.uint8)
        for j in range(k):
            np.bitwise_and(raw >> (bits * j), mask, out=out[:, j])
        return out.reshape(-1)[:n]
    groups = -(-n // 8)
    padded = np.zeros(groups * bits, np.uint8)
    padded[:raw.size] = raw
    words = np.zeros((groups, 8), np.uint8)
    words[:, :bits] = padded.reshape(groups, bits)
    w = words.view("<u8").reshape(-1)
    out = np.empty((groups, 8), np.uint8)
    for j in range(8):
        out[:, j] = (w >> np.uint64(bits * j)) & np.uint64(mask)
    return out.reshape(-1)[:n]


def _compress(entropy: str, payload: np.ndarray) -> bytes:
    if entropy == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(payload)
    if payload.nbytes > _LZ4_MAX:
        raise CodecError(f"lz4 blocks hold at most {_LZ4_MAX} bytes, this payload has "
                         f"{payload.nbytes}; use zstd for it")
    return lz4.block.compress(payload, store_size=False)


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
        return _build(h, data, lo, hi)
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed allocation as RuntimeError
        raise CodecError(f"codec frame: decoding {h.numel} x {h.dtype} failed for want of memory "
                         f"({exc}); lower Limits.max_elements to refuse such frames") from None


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
    if kind == "quant" and not 2 <= bits <= 8:
        raise _bad("bits", bits, "quant codes have 2..8 bits")
    if kind != "quant" and (bits or per_channel):
        raise _bad("bits/per-channel", (bits, per_channel), f"codec {kind} takes neither")
    if kind != "raw" and (not dtype.is_floating_point or kind != "quant" and dtype.itemsize == 2):
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
    if kind == "quant" and (numel == 0 or (per_channel and ndim == 0)):
        raise _bad("codec kind", kind, f"not applied to shape {shape} (the encoder writes raw)")
    want_scales = (_channels(shape)[1] if per_channel else 1) if kind == "quant" else 0
    if n_scales != want_scales:
        raise _bad("scale count", n_scales, f"{kind}{' per channel' if per_channel else ''} "
                                            f"of shape {shape} has {want_scales}")
    if payload_len != total - scales_at - 8 * n_scales:
        raise _bad("payload length", payload_len, f"the frame holds "
                   f"{total - scales_at - 8 * n_scales} bytes after the header and scales")
    raw_size = {"raw": numel * dtype.itemsize, "fp16": numel * 2, "bf16": numel * 2,
                "quant": (numel * bits + 7) // 8}[kind]
    if (entropy is None or raw_size == 0) and payload_len != raw_size:
        raise _bad("payload length", payload_len, f"{kind} of {numel} x {dtype} takes {raw_size}")
    if entropy is not None and raw_size and not payload_len:
        raise _bad("payload length", payload_len, f"a {entropy} payload is never empty")
    if entropy == "lz4" and raw_size > _LZ4_MAX:
        raise _bad("payload size", raw_size, f"an lz4 block holds at most {_LZ4_MAX} bytes")
    return _Header(dtype, kind, bits, per_channel, entropy, shape, numel, n_scales, scales_at,
                   raw_size)


def _view(frame: bytes | bytearray | memoryview) -> memoryview:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise CodecError(f"decode takes bytes, bytearray or memoryview, got {type(frame).__name__}")
    mv = memoryview(frame)
    if not mv.c_contiguous:
        raise CodecError("decode takes a contiguous buffer; got a strided memoryview")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


def _decompress(entropy: str, data: memoryview, size: int) -> bytes:
    """Decompress to exactly ``size`` bytes; the size is checked before any output is made."""
    try:
        if entropy == "zstd":
            declared = zstandard.frame_content_size(data)
            if declared != size:
                raise _bad("zstd content size", declared, f"the header implies {size} bytes")
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size,
                                                          allow_extra_data=False)
        else:
            out = lz4.block.decompress(data, uncompressed_size=size)
    except (zstandard.ZstdError, lz4.block.LZ4BlockError) as exc:
        raise _bad(f"{entropy} payload", "corrupt", f"decompression failed: {exc}") from None
    if len(out) != size:
        raise _bad(f"{entropy} payload", f"{len(out)} bytes decompressed", f"expected {size}")
    return out


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
