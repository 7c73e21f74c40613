"""Input codecs: the model's input crosses the first hop as a device has it, 8-bit pixels (u8)
or an image file (jpeg, webp, png), decoded on the receiving tier. Lossless on 8-bit data, the
lossy ones within their documented figures on a real photo, calibrated at cut 0, and through a
real tier server, which answers a corrupt or mis-sized image with INVALID_ARGUMENT and goes on
serving."""
from __future__ import annotations

import struct

import grpc
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from sklearn.datasets import load_sample_image

from tiercut import trace
from tiercut.codecs import IMAGE_CODECS, CodecError, Limits, decode, encode, max_error, parse_codec
from tiercut.codecs.calibrate import calibrate
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime.client import SplitClient
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import StagePlan, layout
from tiercut.zoo import resolve
from tiercut.zoo.digits import digits_data

from test_fuzz import mutated, rpc_outcome

HEADER = struct.Struct("<4sBBBBBBBBIQ")  # docs/codecs.md
# Max and mean abs error on the photo below, in units of the range 0..1, a little above those
# measured (jpeg90 0.204 and 0.0152, jpeg75 0.282 and 0.0224, webp80 0.196 and 0.0166).
PHOTO_MAX_ERROR = {"jpeg90": 0.25, "jpeg75": 0.35, "webp80": 0.25}
PHOTO_MEAN_ERROR = {"jpeg90": 0.02, "jpeg75": 0.03, "webp80": 0.02}


def photo() -> torch.Tensor:
    """scikit-learn's bundled china.jpg, a 224x224 crop, as (1, 3, 224, 224) floats k/255."""
    pixels = load_sample_image("china.jpg")[100:324, 200:424]
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def eight_bit(shape=(2, 3, 16, 16), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


# ---- names ------------------------------------------------------------------------------
def test_image_names_parse_and_round_trip():
    for name in IMAGE_CODECS + ("u8@-1:1+lz4", "jpeg1", "webp100@0:255", "png@-2.5:2.75"):
        spec = parse_codec(name)
        assert spec.name == name and parse_codec(spec.name) == spec and not spec.lossless
    assert parse_codec("JPEG90").quality == 90 and parse_codec("u8").value_range == (0.0, 1.0)
    assert parse_codec("u8@0:255").value_range == (0.0, 255.0)


@pytest.mark.parametrize("bad, message", [
    ("jpeg0", "jpeg quality 0: accepted 1..100"), ("webp101", "webp quality 101"),
    ("png+zstd", "png is an image file.*takes no \\+zstd"), ("jpeg", "unknown codec 'jpeg'"),
    ("q8@0:1", "only u8, jpeg, webp and png take a value range"),
    ("u8@1:0", "u8 value range 1.0:0.0: accepted finite LO < HI"), ("png@0", "unknown codec")])
def test_bad_image_names_say_what_is_accepted(bad, message):
    with pytest.raises(CodecError, match=message):
        parse_codec(bad)


# ---- round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["u8", "u8+zstd", "png"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_eight_bit_data_crosses_bit_exact(codec, dtype):
    """A camera's frame scaled to 0..1 (k / 255) comes back bit for bit, whatever its min and
    max: the range is the codec's, not the data's (q8 takes the data's and is not exact)."""
    k = eight_bit()
    x = k.to(dtype) / 255
    x = x.clamp(10 / 255, 200 / 255)  # min and max off the range's ends
    y = decode(encode(x, codec))
    assert y.dtype == dtype and y.is_contiguous() and torch.equal(y, x)
    assert not torch.equal(decode(encode(x, "q8")), x)


def test_pixels_on_0_255_and_uint8_frames_are_exact():
    k = eight_bit()
    for codec in ("u8@0:255", "png@0:255"):
        assert torch.equal(decode(encode(k.float(), codec)), k.float())
    y = decode(encode(k, "png"))  # uint8 pixels, as a camera hands them over
    assert y.dtype == torch.uint8 and torch.equal(y, k) and max_error("png", k) == 0.0
    assert decode(encode(k, "jpeg90")).dtype == torch.uint8
    assert torch.equal(decode(encode(k, "u8")), k)  # uint8 under u8: sent raw
    assert torch.equal(decode(encode(torch.arange(5), "jpeg90")), torch.arange(5))  # ints raw


def test_u8_on_four_bit_digits_is_within_half_a_step():
    x = digits_data()[2][:50]  # k / 16: not on the 8-bit grid
    err = float((decode(encode(x, "u8")) - x).abs().max())
    assert 0.9 / 510 < err <= max_error("u8", x) < 1.01 / 510


@pytest.mark.parametrize("codec", sorted(PHOTO_MAX_ERROR))
def test_lossy_formats_on_a_real_photo_are_within_their_measured_error(codec):
    x = photo()
    frame = encode(x, codec)
    y = decode(frame)
    err = (y - x).abs()
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(err.max()) <= PHOTO_MAX_ERROR[codec] <= max_error(codec, x)
    assert float(err.mean()) <= PHOTO_MEAN_ERROR[codec]
    assert len(frame) < x.numel() / 4  # at least 4x smaller than uint8 pixels (150528 B)


@pytest.mark.parametrize("codec", ["jpeg90", "webp80", "png"])
def test_gray_and_batched_images(codec):
    x = digits_data()[2][:3]  # (3, 1, 8, 8)
    y = decode(encode(x, codec))
    assert y.shape == (3, 1, 8, 8) and float((y - x).abs().max()) <= max_error(codec, x)
    if codec == "png":
        rgba = eight_bit((2, 4, 5, 7))
        assert torch.equal(decode(encode(rgba, codec)), rgba)


# ---- what encode refuses ----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 8), (1, 2, 8, 8), (1, 4, 8, 8), (3, 8, 8)])
def test_image_files_refuse_other_shapes_naming_them(shape):
    with pytest.raises(CodecError, match=rf"jpeg takes \(N, C, H, W\) images with C in 1, 3; "
                                         rf"got shape \({', '.join(map(str, shape))}\)"):
        encode(torch.rand(shape), "jpeg90")


def test_values_outside_the_range_are_refused_with_a_range_that_holds_them():
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(CodecError, match=r"u8 takes values within its range 0\.\.1: the tensor "
                                         r"has \d+ value\(s\) outside .* e\.g\. u8@-\d+:\d+"):
        encode(x, "u8")
    with pytest.raises(CodecError, match="outside"):
        max_error("png", x)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(CodecError, match="1 nan"):
        encode(x, "jpeg90@-9:9")
    assert float((decode(encode(x.nan_to_num(), "u8@-9:9")) - x.nan_to_num()).abs().max()) \
        <= 18 / 510 + 1e-5


# ---- what decode refuses ----------------------------------------------------------------
def _frame_with_files(shape, files, dtype_code=1, kind=5, quality=90):
    """A jpeg frame as the docs lay it out: header, dims, the (0, 1) range, lengths, files."""
    payload = struct.pack(f"<{len(files)}I", *map(len, files)) + b"".join(files)
    head = HEADER.pack(b"TCUT", 1, dtype_code, kind, quality, 0, 0, 4, 0, 1, len(payload))
    return head + struct.pack("<4Q", *shape) + struct.pack("<2f", 0.0, 1.0) + payload


def _jpeg_file_of(frame):
    """The one file of a one-image frame: after the header, 4 dims, the range and one length."""
    return frame[HEADER.size + 32 + 8 + 4:]


def _jpeg_file(h, w, c=1):
    g = torch.Generator().manual_seed(2)
    return _jpeg_file_of(encode(torch.rand(1, c, h, w, generator=g), "jpeg90"))


def test_frame_layout_of_an_image_file():
    frame = encode(torch.rand(1, 1, 8, 8), "jpeg90")
    assert frame == _frame_with_files((1, 1, 8, 8), [_jpeg_file_of(frame)])
    assert _jpeg_file_of(frame)[:2] == b"\xff\xd8"  # a JPEG file as any viewer reads it


def test_a_jpeg_of_another_size_than_the_header_is_refused_naming_both():
    with pytest.raises(CodecError, match=r"jpeg image 0 is 16x16 pixels \(WxH\) but the "
                                         r"header's shape says 8x8"):
        decode(_frame_with_files((1, 1, 8, 8), [_jpeg_file(16, 16)]))
    with pytest.raises(CodecError, match="jpeg image 0 is Gray but the header's shape has 3"):
        decode(_frame_with_files((1, 3, 8, 8), [_jpeg_file(8, 8)]))


def test_corrupt_and_inconsistent_image_payloads_are_named():
    good = _jpeg_file(8, 8)
    corrupt = good[:20] + bytes(len(good) - 20)
    cases = [
        ([corrupt], "jpeg image 0 is 'corrupt'"), ([good[:-30]], "jpeg image 0 is 'corrupt'"),
        ([b"not a jpeg"], "jpeg image 0 is 'corrupt'"),
    ]
    for files, message in cases:
        with pytest.raises(CodecError, match=message):
            decode(_frame_with_files((1, 1, 8, 8), files))
    frame = _frame_with_files((1, 1, 8, 8), [good])
    lengths_at = HEADER.size + 32 + 8
    bad_length = frame[:lengths_at] + struct.pack("<I", len(good) - 1) + frame[lengths_at + 4:]
    with pytest.raises(CodecError, match="jpeg file lengths"):
        decode(bad_length)
    for fields, message in [
            (dict(quality=0), "takes a quality 1..100"),
            (dict(dtype_code=5), "codec kind is 'jpeg'; not applied to torch.int64"),
            (dict(kind=7, quality=0), "png image 0 is 'corrupt'")]:  # a JPEG file as a PNG
        with pytest.raises(CodecError, match=message):
            decode(_frame_with_files((1, 1, 8, 8), [good], **fields))
    with pytest.raises(CodecError, match=r"shape is \(1, 2, 8, 8\); jpeg holds"):
        decode(_frame_with_files((1, 2, 8, 8), [good]))


def test_huge_image_shapes_are_refused_before_decoding():
    frame = _frame_with_files((1, 3, 1 << 15, 1 << 15), [_jpeg_file(8, 8)])
    with pytest.raises(CodecError, match="max_elements"):
        decode(frame, Limits(max_elements=1 << 20))


SEEDS = [encode(torch.rand(1, 1, 8, 8), c) for c in ("jpeg90", "webp80", "png", "u8+zstd")]
SEEDS.append(encode(eight_bit((1, 3, 4, 4)), "png"))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SEEDS))
def test_mutated_image_frames_decode_or_raise_codec_error(frame):
    limits = Limits(max_elements=4096, max_bytes=1 << 16)
    try:
        y = decode(frame, limits)
    except CodecError:
        return
    assert y.numel() <= limits.max_elements


# ---- calibration at cut 0 ---------------------------------------------------------------
def test_calibration_of_the_input_as_a_cut():
    entry = resolve("digits_cnn")
    graph = trace(entry.build().eval(), entry.example_inputs(), name="digits_cnn")
    _, _, x, y = digits_data()
    x, y = x[:200], y[:200]
    table = calibrate(graph, [x], y, "top1", codecs=["u8", "png", "jpeg90"], positions=[0, 2])
    at0 = table.cut(0)
    assert at0.tensors == ("x",) and not at0.refused
    assert at0.result("u8").loss == 0.0 and at0.result("png").loss == 0.0
    assert abs(at0.result("jpeg90").loss) <= 0.02
    assert at0.result("u8").ratio == pytest.approx((24 + 32 + 8 + 64) / 256)
    refused = table.cut(2).refused  # an activation is neither in 0..1 nor, for files, C in 1, 3
    assert set(refused) == {"u8", "png", "jpeg90"} and "jpeg takes" in refused["jpeg90"]


# ---- through a real tier server ---------------------------------------------------------
MODEL = "digits_cnn"
INFER = "/tiercut.runtime.TierServer/Infer"


@pytest.fixture(scope="module")
def cloud():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs: bit-equal answers need the same kernels
    entry = resolve(MODEL)
    plan = StagePlan.from_assignment(MODEL, {n.name: 1 for n in trace(
        entry.build(), entry.example_inputs(), name=MODEL).compute_nodes}, ("device", "cloud"))
    server = serve_in_thread([MODEL], threads=1)
    try:
        yield server, plan, entry.build().eval()
    finally:
        server.stop(0)
        torch.set_num_threads(threads)


def _infer(plan, endpoint, codec, xs):
    with SplitClient(plan, [endpoint], codec=codec) as client:
        return [client.infer(x)[0] for x in xs]


def test_lossless_input_codecs_are_bit_exact_through_the_runtime(cloud):
    server, plan, model = cloud
    xs = (torch.round(digits_data()[2][:6] * 255) / 255).split(1)  # 8-bit data
    with torch.inference_mode():
        expected = [model(x) for x in xs]
    for codec in ("u8", "png", "u8+zstd"):
        for out, want in zip(_infer(plan, server.endpoint, codec, xs), expected):
            assert torch.equal(out, want), codec


def test_jpeg_on_the_first_hop_is_the_model_on_the_decoded_jpeg(cloud):
    server, plan, model = cloud
    xs = digits_data()[2][:20].split(1)
    outs = _infer(plan, server.endpoint, "jpeg90", xs)
    with torch.inference_mode():
        for x, out in zip(xs, outs):
            seen = decode(encode(x, "jpeg90"))
            assert float((seen - x).abs().max()) <= max_error("jpeg90", x)
            assert torch.equal(out, model(seen))  # the only change is the input's codec
        agree = sum(int(out.argmax() == model(x).argmax()) for x, out in zip(xs, outs))
    assert agree >= 19


def _request(plan, frame):
    request = pb.InferRequest(plan_id=plan.plan_id, stage=1, request_id="bad", codec="jpeg90")
    request.values.add(name=layout(plan).receives[1][0]).value.tensor = frame
    return request.SerializeToString()


def test_a_corrupt_or_mis_sized_jpeg_is_invalid_argument_and_the_server_goes_on(cloud):
    server, plan, model = cloud
    x = digits_data()[2][:1]
    good = encode(x, "jpeg90")
    file = _jpeg_file_of(good)
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        stub.Prepare(pb.PrepareRequest(plan_json=plan.to_json(), stage=1), timeout=60)
        corrupt = good[:-len(file)] + file[:40] + bytes(len(file) - 40)
        code, details = rpc_outcome(channel, INFER, _request(plan, corrupt))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "jpeg image 0 is 'corrupt'" in details
        mis_sized = _frame_with_files((1, 1, 8, 8), [_jpeg_file(16, 16)])
        code, details = rpc_outcome(channel, INFER, _request(plan, mis_sized))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "jpeg image 0 is 16x16 pixels (WxH) but the header's shape says 8x8" in details
        wrong_frame = encode(torch.rand(1, 1, 16, 16), "jpeg90")  # consistent, but not the plan's
        code, details = rpc_outcome(channel, INFER, _request(plan, wrong_frame))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "should be tensor [1, 1, 8, 8] float32, got tensor [1, 1, 16, 16]" in details
        code, _ = rpc_outcome(channel, INFER, _request(plan, good))
        assert code == grpc.StatusCode.OK
        assert stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthReply.SERVING
    out = _infer(plan, server.endpoint, "jpeg90", [x])[0]
    with torch.inference_mode():
        assert torch.equal(out, model(decode(good)))
