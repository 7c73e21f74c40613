"""The lossy value stages' arithmetic: the range fp16 and bf16 can carry, c-bit min-max
quantization per tensor or per channel, and the bit packing of its codes. Encoder and decoder
share ``_step`` and ``_channels``, so both sides compute the same groups and steps.
"""
from __future__ import annotations

import numpy as np
import torch

from .spec import CodecError

_FP16_MAX = 65504.0
_BF16_MAX = 3.3895313892515355e38  # (2 - 2**-7) * 2**127


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
