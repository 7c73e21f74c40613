"""Codecs: lossless round trips bit for bit, lossy ones within their documented bound, and
decode of any byte string returns a tensor or raises CodecError, nothing else."""
from __future__ import annotations

import math
import re
import struct
import tracemalloc

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tiercut.codecs import (
    CODECS, DEFAULT_LIMITS, CodecError, CodecSpec, Limits, decode, encode, max_error, parse_codec,
)
from tiercut.errors import TiercutError

pytestmark = pytest.mark.filterwarnings("error")  # e.g. torch.frombuffer on read-only bytes

HEADER = struct.Struct("<4sBBBBBBBBIQ")  # as documented in docs/codecs.md
FIELDS = ("magic", "version", "dtype", "kind", "bits", "flags", "entropy", "ndim", "reserved",
          "n_scales", "payload_len")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool)
FLOATS = DTYPES[:4]
LOSSLESS = ("raw", "raw+zstd", "raw+lz4")
LOSSY = tuple(c for c in CODECS if not parse_codec(c).lossless)
AS_INT = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
          torch.bfloat16: torch.int16, torch.bool: torch.uint8}
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers, so NaN payloads and -0.0 compare exactly."""
    return t.contiguous().view(AS_INT.get(t.dtype, t.dtype))


def assert_bit_exact(y: torch.Tensor, x: torch.Tensor) -> None:
    assert y.dtype == x.dtype and y.shape == x.shape
    assert torch.equal(bits_of(y), bits_of(x))


def header(frame: bytes) -> dict:
    return dict(zip(FIELDS, HEADER.unpack_from(frame)))


def patched(frame: bytes, **fields) -> bytes:
    h = header(frame) | fields
    return HEADER.pack(*(h[f] for f in FIELDS)) + frame[HEADER.size:]


def special(dtype: torch.dtype, shape=(3, 4, 5)) -> torch.Tensor:
    """Random values of dtype, with NaN payloads, -0.0, infinities and subnormals for floats."""
    n = math.prod(shape)
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        return torch.randint(info.min, info.max, shape, dtype=torch.int64).to(dtype)
    x = torch.randn(n, dtype=torch.float64).to(dtype)
    extras = torch.tensor([-0.0, math.inf, -math.inf, torch.finfo(dtype).tiny / 4,
                           torch.finfo(dtype).max], dtype=dtype)
    x[: len(extras)] = extras
    ints = bits_of(x)
    nans = {torch.int32: 0x7FC00001, torch.int64: 0x7FF8000000000123, torch.int16: 0x7E01}
    nan = nans[ints.dtype]
    ints[len(extras)] = nan  # a quiet NaN with a payload
    ints[len(extras) + 1] = -nan - 1  # and one with the sign bit set
    return x.reshape(shape)


# ---- lossless ---------------------------------------------------------------------------
@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lossless_round_trip_is_bit_exact(codec, dtype):
    x = special(dtype)
    cases = [x, x[0, 0, 0].clone(), x[:0], x.new_empty((2, 0, 3)), x.transpose(0, 2), x[:, ::2, 1:]]
    for t in cases:
        assert_bit_exact(decode(encode(t, codec)), t)


@given(data=st.data())
@FAST
def test_lossless_round_trip_of_random_bytes(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=4)))
    n = math.prod(shape)
    if dtype == torch.bool:
        flags = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        x = torch.tensor(flags, dtype=torch.bool)
    else:
        raw = data.draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
        as_int = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[dtype.itemsize]
        ints = np.frombuffer(raw, as_int)
        x = torch.from_numpy(ints.copy()).view(dtype)
    x = x.reshape(shape)
    for codec in LOSSLESS:
        assert_bit_exact(decode(encode(x, codec)), x)


@pytest.mark.parametrize("codec", ["q8+zstd", "fp16+lz4", "bf16", "q3-channel"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.uint8, torch.bool], ids=str)
def test_lossy_codec_on_integers_falls_back_to_raw_and_keeps_entropy(codec, dtype):
    x = special(dtype)
    frame = encode(x, codec)
    h = header(frame)
    assert (h["kind"], h["bits"], h["flags"], h["n_scales"]) == (0, 0, 0, 0)
    assert h["entropy"] == {None: 0, "zstd": 1, "lz4": 2}[parse_codec(codec).entropy]
    assert_bit_exact(decode(frame), x)


@pytest.mark.parametrize("codec, dtype", [("fp16", torch.float16), ("bf16+zstd", torch.bfloat16),
                                          ("bf16", torch.float16), ("fp16+lz4", torch.bfloat16),
                                          ("q8", torch.float32), ("q4-channel", torch.float64)])
def test_codec_that_would_not_change_anything_is_recorded_as_raw(codec, dtype):
    x = special(dtype) if codec.startswith(("fp", "bf")) else torch.empty((3, 0), dtype=dtype)
    frame = encode(x, codec)
    assert header(frame)["kind"] == 0
    assert_bit_exact(decode(frame), x)


def test_per_channel_on_a_0d_tensor_is_per_tensor():
    frame = encode(torch.tensor(2.5), "q8-channel")
    assert (header(frame)["flags"], header(frame)["n_scales"]) == (0, 1)
    assert decode(frame).item() == 2.5


# ---- lossy ------------------------------------------------------------------------------
SCALES = (1e-41, 1e-20, 1e-3, 1.0, 1000.0, 6e4, 1e30, 3.4e38)


@st.composite
def float_tensors(draw, max_abs=None):
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=6))
    scale = draw(st.sampled_from([s for s in SCALES if max_abs is None or s <= max_abs]))
    offset = draw(st.sampled_from([0.0, 0.5, -3.0]))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    x = torch.from_numpy(np.asarray((values + offset) * scale)).to(dtype)
    limit = min(torch.finfo(dtype).max, max_abs or math.inf)
    return x.clamp(-limit, limit)


# quantization works in float32: float64 values beyond its range are refused (tested below)
@given(x=float_tensors(max_abs=float(torch.finfo(torch.float32).max)),
       codec=st.sampled_from([c for c in LOSSY if c[0] == "q"]))
@FAST
def test_quant_error_is_within_max_error(x, codec):
    y = decode(encode(x, codec))
    assert y.dtype == x.dtype and y.shape == x.shape and torch.isfinite(y).all()
    assert (y.double() - x.double()).abs().max().item() <= max_error(codec, x)


@given(x=float_tensors(max_abs=6e4),
       codec=st.sampled_from(["fp16", "fp16+zstd", "bf16", "bf16+lz4"]))
@FAST
def test_half_error_is_within_max_error(x, codec):
    y = decode(encode(x, codec))
    assert y.dtype == x.dtype and y.shape == x.shape
    assert (y.double() - x.double()).abs().max().item() <= max_error(codec, x)


@pytest.mark.parametrize("bits", range(2, 9))
def test_quant_bound_is_half_a_step_and_nearly_reached(bits):
    x = torch.rand(4096) * 10 - 3
    step = (x.max() - x.min()).item() / (2**bits - 1)
    bound = max_error(f"q{bits}", x)
    assert step / 2 <= bound <= step / 2 + 2**-18 * x.abs().max().item()
    err = (decode(encode(x, f"q{bits}")) - x).abs().max().item()
    assert 0.9 * step / 2 <= err <= bound


@pytest.mark.parametrize("bits", range(2, 9))
def test_quant_size_shrinks_by_32_over_bits(bits):
    n = 4096
    frame = encode(torch.randn(n), f"q{bits}")
    assert len(frame) == HEADER.size + 8 + 8 + math.ceil(n * bits / 8)
    assert len(frame) / (4 * n) == pytest.approx(bits / 32, rel=0.05)
    odd = encode(torch.randn(13), f"q{bits}")  # a bit stream, not whole bytes per code
    assert len(odd) == HEADER.size + 8 + 8 + math.ceil(13 * bits / 8)


def test_per_channel_bound_holds_per_channel():
    scales = torch.tensor([1e-3, 1.0, 1e3, 0.0])  # the last channel is constant
    offsets = torch.tensor([0, 5, -7, 2.0])
    x = torch.randn(2, 4, 5, 3) * scales.view(1, 4, 1, 1) + offsets.view(1, 4, 1, 1)
    y = decode(encode(x, "q4-channel"))
    for k in range(4):
        ch, out = x[:, k], y[:, k]
        step = (ch.max() - ch.min()).item() / 15
        assert (out - ch).abs().max().item() <= step / 2 + 2**-19 * ch.abs().max().item()
    assert torch.equal(y[:, 3], x[:, 3])
    assert (y[:, 0] - x[:, 0]).abs().max() < max_error("q4", x) / 1000  # per-tensor would be worse
    assert (y - x).abs().max().item() <= max_error("q4-channel", x)


def test_per_channel_of_1d_is_along_dim_0():
    x = torch.randn(10)
    frame = encode(x, "q2-channel")
    assert header(frame)["n_scales"] == 10
    assert torch.equal(decode(frame), x)  # every channel is one value: exact


@pytest.mark.parametrize("codec", ["q2", "q8-channel+zstd", "q5"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_constant_tensor_quantizes_exactly(codec, dtype):
    x = torch.full((3, 4, 2), -1.75, dtype=dtype)
    assert torch.equal(decode(encode(x, codec)), x)


@pytest.mark.parametrize("values", [[-3.0e38, 3.0e38, 1.0], [0.0, 1e-44, 3e-45],
                                    [1e30, 1e30 + 1e24]])
def test_quant_at_the_edges_of_float32(values):
    x = torch.tensor(values)
    y = decode(encode(x, "q8"))
    assert torch.isfinite(y).all()
    assert (y.double() - x.double()).abs().max().item() <= max_error("q8", x)


@pytest.mark.parametrize("codec", ["q8", "q4-channel+zstd"])
def test_quant_rejects_non_finite_values_naming_the_count(codec):
    x = torch.randn(2, 3, 4)
    x[0, 0, 0], x[1, 2, 3] = math.nan, -math.inf
    with pytest.raises(CodecError, match=r"2 nan/inf"):
        encode(x, codec)
    with pytest.raises(CodecError, match=r"nan/inf"):
        max_error(codec, x)
    with pytest.raises(CodecError, match=r"1 nan/inf"):
        encode(torch.tensor([1.0, 1e39], dtype=torch.float64), codec)


def test_fp16_rejects_values_beyond_its_range():
    with pytest.raises(CodecError, match=r"65504.*2 value\(s\) beyond"):
        encode(torch.tensor([1.0, 70000.0, -65505.0]), "fp16")
    with pytest.raises(CodecError, match=r"bf16.*1 value"):
        encode(torch.tensor([1.0, 1e39], dtype=torch.float64), "bf16")
    assert decode(encode(torch.tensor([65504.0, -65504.0]), "fp16")).tolist() == [65504.0, -65504.0]


@pytest.mark.parametrize("codec", ["fp16", "bf16"])
def test_half_codecs_carry_nan_and_inf(codec):
    x = torch.tensor([math.nan, math.inf, -math.inf, 1.0])
    y = decode(encode(x, codec))
    assert torch.isnan(y[0]) and y[1:].tolist() == [math.inf, -math.inf, 1.0]


def test_fp16_relative_and_subnormal_bounds():
    x = torch.tensor([1.0 + 2**-11, 3.14159, -1000.7, 2.0**-20, 2.0**-26], dtype=torch.float64)
    y = decode(encode(x, "fp16"))
    assert y.dtype == torch.float64
    err = (y - x).abs()
    assert (err[:3] <= 2**-11 * x[:3].abs()).all()
    assert (err[3:] <= 2**-25).all()
    assert max_error("fp16", x) == pytest.approx((2**-11 + 2**-23) * 1000.7 + 2**-25)


# ---- the decoded tensor ------------------------------------------------------------------
def test_decoded_tensor_is_writable_and_owns_its_memory():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    for codec in ("raw", "raw+lz4", "fp16", "q8"):
        frame = bytearray(encode(x, codec))
        y = decode(frame)
        frame[-8:] = b"\xff" * 8  # the frame is not aliased
        y.add_(1)  # writable, no warning
        assert y.dtype == torch.float32 and y[2, 3].item() == pytest.approx(12.0, abs=0.03)


def test_decode_takes_bytes_bytearray_and_memoryview():
    x = torch.randn(5, 3)
    frame = encode(x, "raw")
    big = bytearray(b"junk" + frame + b"tail")
    for f in (frame, bytearray(frame), memoryview(frame), memoryview(big)[4:-4]):
        assert torch.equal(decode(f), x)
    with pytest.raises(CodecError, match="decode takes bytes"):
        decode("not bytes")


def test_encode_rejects_unsupported_tensors():
    with pytest.raises(CodecError, match=r"dtype torch.complex64 has no codec; supported: float32"):
        encode(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(CodecError, match="layout"):
        encode(torch.eye(3).to_sparse())
    with pytest.raises(CodecError, match="torch.Tensor"):
        encode(np.zeros(3))


def test_encode_takes_specs_and_tensors_that_need_grad():
    x = torch.randn(3, requires_grad=True)
    assert torch.equal(decode(encode(x, CodecSpec("raw", entropy="zstd"))), x.detach())


def test_frame_layout_is_as_documented():
    x = torch.arange(6, dtype=torch.int16).reshape(2, 3)
    expected = (b"TCUT" + bytes([1, 7, 0, 0, 0, 0, 2, 0]) + struct.pack("<IQ", 0, 12)
                + struct.pack("<2Q", 2, 3) + x.numpy().astype("<i2").tobytes())
    assert encode(x) == expected
    q = encode(torch.tensor([0.0, 1.0, 2.0, 3.0]), "q2")  # codes 0,1,2,3 -> 0b11100100
    assert q[HEADER.size:] == struct.pack("<Q2f", 4, 0.0, 3.0) + bytes([0b11100100])


# ---- names ------------------------------------------------------------------------------
def all_names():
    bases = ["raw", "fp16", "bf16"] + [f"q{b}{c}" for b in range(2, 9) for c in ("", "-channel")]
    return [b + e for b in bases for e in ("", "+zstd", "+lz4")]


@pytest.mark.parametrize("name", CODECS)
def test_every_listed_codec_parses_and_encodes(name):
    spec = parse_codec(name)
    assert spec.name == name and parse_codec(spec.name) == spec
    x = torch.randn(4, 3)
    assert decode(encode(x, name)).shape == (4, 3)


def test_every_canonical_name_round_trips():
    names = all_names()
    assert len(set(map(parse_codec, names))) == len(names) == 3 * 17
    for name in names:
        assert parse_codec(name).name == name
    assert parse_codec(" Q4-Channel+ZSTD ") == CodecSpec("quant", 4, True, "zstd")
    assert parse_codec("raw+lz4").lossless and not parse_codec("q8").lossless


@pytest.mark.parametrize("bad", ["q9", "q1", "q", "fp32", "raw+gzip", "q8-chan", "", "raw+zstd+lz4",
                                 "zstd", "q8channel", "q 8"])
def test_bad_names_are_rejected_with_the_accepted_forms(bad):
    expected = rf"unknown codec {re.escape(repr(bad))}; accepted: raw, fp16, bf16, q2\.\.q8"
    with pytest.raises(CodecError, match=expected):
        parse_codec(bad)
    with pytest.raises(CodecError):
        encode(torch.zeros(2), bad)


def test_codec_errors_are_tiercut_value_errors():
    assert issubclass(CodecError, TiercutError) and issubclass(CodecError, ValueError)
    with pytest.raises(CodecError, match="str"):
        parse_codec(8)
    for kwargs in [dict(kind="quant", bits=9), dict(kind="raw", bits=8), dict(kind="int8"),
                   dict(kind="fp16", per_channel=True), dict(kind="raw", entropy="gzip")]:
        with pytest.raises(CodecError):
            CodecSpec(**kwargs)


# ---- malformed frames -------------------------------------------------------------------
def valid_frames() -> list[bytes]:
    x = torch.randn(2, 3, 4)
    frames = [encode(x, c) for c in ("raw", "raw+zstd", "raw+lz4", "fp16", "bf16+zstd", "q8", "q3",
                                     "q4-channel+lz4", "q2-channel", "q7+zstd")]
    frames += [encode(torch.tensor(True)), encode(torch.arange(5)),
               encode(torch.zeros(0, 3), "q8+zstd")]
    return frames


@pytest.mark.parametrize("frame", valid_frames()[:10], ids=lambda f: f"{len(f)}B")
def test_every_truncation_is_rejected(frame):
    decode(frame)
    for k in range(len(frame)):
        with pytest.raises(CodecError):
            decode(frame[:k])
    with pytest.raises(CodecError, match="payload length"):
        decode(frame + b"\0")


def test_bad_header_fields_are_named():
    frame = encode(torch.randn(2, 3), "q4-channel+zstd")
    cases = [
        (dict(magic=b"PK\x03\x04"), "magic"), (dict(version=2), "version"),
        (dict(dtype=0), "dtype code is 0"), (dict(dtype=11), "dtype code is 11"),
        (dict(kind=8), "codec kind is 8"), (dict(entropy=3), "entropy code is 3"),
        (dict(bits=9), "bits is 9"), (dict(bits=1), "bits is 1"), (dict(flags=3), "flags"),
        (dict(reserved=1), "reserved"), (dict(n_scales=2), "scale count is 2"),
        (dict(n_scales=2**32 - 1), "scale count"), (dict(payload_len=2**64 - 1), "payload length"),
        (dict(ndim=9), "ndim is 9; accepted at most Limits.max_ndim = 8"),
        (dict(kind=0), "bits/per-channel"), (dict(dtype=5), "codec kind is 'quant'; not applied"),
    ]
    for fields, message in cases:
        with pytest.raises(CodecError, match=message):
            decode(patched(frame, **fields))


def test_huge_dims_are_rejected_before_allocating():
    prefix = HEADER.pack(b"TCUT", 1, 1, 0, 0, 0, 0, 2, 0, 0, 0)
    for dims in [(2**40, 2**40), (2**63, 0), (2**64 - 1, 1), (2**14, 2**15)]:
        tracemalloc.start()
        with pytest.raises(CodecError, match="max_elements"):
            decode(prefix + struct.pack("<2Q", *dims))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20  # refused from the header alone
    frame = encode(torch.randn(6, 10), "raw+zstd")
    with pytest.raises(CodecError, match="number of elements is 60"):
        decode(frame, Limits(max_elements=59))
    with pytest.raises(CodecError, match="max_bytes"):
        decode(frame, Limits(max_bytes=len(frame) - 1))
    assert decode(frame, Limits(max_elements=60, max_bytes=len(frame))).shape == (6, 10)
    assert DEFAULT_LIMITS == Limits()


@pytest.mark.parametrize("codec", ["raw+zstd", "raw+lz4", "q8+zstd"])
def test_payload_that_expands_beyond_the_declared_size_is_rejected(codec):
    frame = encode(torch.zeros(100), codec)
    fewer = frame[:HEADER.size] + struct.pack("<Q", 50) + frame[HEADER.size + 8:]  # dims: 100 -> 50
    with pytest.raises(CodecError, match=r"(zstd|lz4) (content size|payload)"):
        decode(fewer)
    more = frame[:HEADER.size] + struct.pack("<Q", 200) + frame[HEADER.size + 8:]
    with pytest.raises(CodecError, match=r"(zstd|lz4) (content size|payload)"):
        decode(more)


def test_zstd_payload_without_content_size_is_rejected():
    frame = encode(torch.zeros(100), "raw+zstd")
    body = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(400))
    forged = patched(frame[:HEADER.size + 8], payload_len=len(body)) + body
    with pytest.raises(CodecError, match="zstd content size is -1"):
        decode(forged)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_scales_are_rejected(value):
    frame = bytearray(encode(torch.randn(3, 4), "q8-channel"))
    at = HEADER.size + 16 + 8 + 4  # second channel's max
    frame[at:at + 4] = struct.pack("<f", value)
    with pytest.raises(CodecError, match="scales is '1 nan/inf'"):
        decode(frame)


def test_scales_with_min_above_max_and_bad_bool_bytes_are_rejected():
    frame = bytearray(encode(torch.randn(8), "q8"))
    frame[HEADER.size + 8:HEADER.size + 16] = struct.pack("<2f", 1.0, -1.0)
    with pytest.raises(CodecError, match="min > max"):
        decode(frame)
    frame = bytearray(encode(torch.ones(4, dtype=torch.bool)))
    frame[-1] = 2
    with pytest.raises(CodecError, match="bool payload is 2"):
        decode(frame)


# ---- fuzz -------------------------------------------------------------------------------
FRAMES = valid_frames()


def decodes_or_rejects(frame: bytes) -> None:
    try:
        out = decode(frame, Limits(max_elements=1 << 16))
    except CodecError:
        return
    assert isinstance(out, torch.Tensor)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_decode_or_raise_codec_error(data):
    decodes_or_rejects(data)
    decodes_or_rejects(b"TCUT\x01" + data)  # past the magic, into the field checks


@given(st.data())
@settings(max_examples=600, deadline=None)
def test_mutated_frames_decode_or_raise_codec_error(data):
    frame = bytearray(data.draw(st.sampled_from(FRAMES)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(frame) - 1, 0)))
        if op == "flip" and frame:
            frame[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and frame:
            frame[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del frame[at:]
        elif op == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        else:
            del frame[at:at + data.draw(st.integers(1, 9))]
    decodes_or_rejects(bytes(frame))
