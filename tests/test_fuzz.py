"""Hostile input: random and mutated frames and requests never crash, hang or over-allocate.

Decoder level: random bytes and mutated valid frames into ``codecs.decode`` and
``wire.decode_values`` raise only their own errors, and whatever they return stays within the
limits. RPC level: mutated valid serialized InferRequest / PrepareRequest bytes are sent raw
(a generic channel call, no serializer) to a real server, each with a deadline; every answer is
a proper status (no UNKNOWN, i.e. no unhandled exception) and the server still serves after.
Counts are bounded (hypothesis max_examples); benchmarks/fuzz.py runs the long campaign.
"""
import dataclasses

import grpc
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut import codecs
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime import wire
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import StagePlan, layout

from test_runtime import SKIP, SKIPPY, TIERS, whole

LIMITS = dataclasses.replace(codecs.DEFAULT_LIMITS, max_elements=4096, max_bytes=1 << 16)
FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_g = torch.Generator().manual_seed(0)
SEEDS = [codecs.encode(t, c) for t, c in [
    (torch.randn(2, 8, generator=_g), "raw"), (torch.randn(3, 4, 5, generator=_g), "fp16"),
    (torch.randn(2, 3, 4, 4, generator=_g), "q8"), (torch.randn(64, generator=_g), "q4+zstd"),
    (torch.randn(4, 16, generator=_g), "raw+lz4"), (torch.arange(10), "raw"),
    (torch.ones(3, dtype=torch.bool), "raw"), (torch.randn(2, 4, 3, generator=_g), "q6-channel+zstd")]]


@st.composite
def mutated(draw, seeds):
    """A seed with a few byte-level mutations: flips, overwrites with extreme ints, cuts,
    insertions, splices."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "byte", "u64", "cut", "insert", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "u64":
            value = draw(st.sampled_from([0, 1, 2**31 - 1, 2**32, 2**63 - 1, 2**64 - 1]))
            data[pos:pos + 8] = value.to_bytes(8, "little")
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            data[pos:] = other[draw(st.integers(0, len(other))):]
    return bytes(data)


def _decode_ok(frame):
    try:
        t = codecs.decode(frame, LIMITS)
    except codecs.CodecError:
        return None
    assert t.numel() <= LIMITS.max_elements and t.dim() <= LIMITS.max_ndim
    return t


@FAST
@given(st.binary(max_size=600))
def test_decoder_random_bytes(frame):
    _decode_ok(frame)


@FAST
@given(mutated(SEEDS))
def test_decoder_mutated_frames(frame):
    _decode_ok(frame)


def test_decoder_refuses_huge_shapes_before_allocating():
    frame = bytearray(SEEDS[0])
    frame[24:32] = (1 << 40).to_bytes(8, "little")  # first dim of shape
    with pytest.raises(codecs.CodecError, match="max_elements"):
        codecs.decode(bytes(frame), LIMITS)


# --- requests ----------------------------------------------------------------------------------

PLAN = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)


def _valid_request():
    _, x, _ = whole(SKIPPY)
    lay = layout(PLAN)
    env = dict(zip(lay.graph.inputs, x))
    env.update(lay.stages[0].run(env))
    request = pb.InferRequest(plan_id=PLAN.plan_id, stage=1, request_id="fuzz", codec="raw")
    wire.encode_values({v: env[v] for v in lay.receives[1]}, "raw", request.values)
    return request.SerializeToString()


VALID_INFER = _valid_request()
VALID_PREPARE = pb.PrepareRequest(plan_json=PLAN.to_json(), stage=2).SerializeToString()
NESTED = pb.InferRequest(plan_id="x")
_v = NESTED.values.add(name="deep").value
for _ in range(40):  # deeper than wire.MAX_DEPTH
    _v = _v.tuple.items.add()
_v.int = 1
NESTED = NESTED.SerializeToString()


@FAST
@given(mutated([VALID_INFER, NESTED]))
def test_request_decoding_mutated(data):
    from google.protobuf.message import DecodeError

    try:
        request = pb.InferRequest.FromString(data)
    except DecodeError:
        return
    try:
        values, _ = wire.decode_values(request.values, LIMITS)
    except wire.WireError:
        return
    for v in values.values():
        if isinstance(v, torch.Tensor):
            assert v.numel() <= LIMITS.max_elements


# --- against a live server --------------------------------------------------------------------

INFER, PREPARE = "/tiercut.runtime.TierServer/Infer", "/tiercut.runtime.TierServer/Prepare"
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED}  # never UNKNOWN (a handler crash) or INTERNAL


def rpc_outcome(channel, method, data, timeout=10.0):
    """The status code and details of one raw call (bytes in, bytes out)."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(data, timeout=timeout)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


@pytest.fixture(scope="module")
def live():
    with serve_in_thread([SKIPPY], limits=LIMITS, max_message_bytes=1 << 20) as cloud, \
            serve_in_thread([SKIPPY], limits=LIMITS, max_message_bytes=1 << 20) as edge:
        with grpc.insecure_channel(edge.endpoint) as channel:
            stub = pb_grpc.TierServerStub(channel)
            stub.Prepare(pb.PrepareRequest(plan_json=PLAN.to_json(), stage=1,
                                           next_endpoint=cloud.endpoint), timeout=60)
            pb_grpc.TierServerStub(grpc.insecure_channel(cloud.endpoint)).Prepare(
                pb.PrepareRequest(plan_json=PLAN.to_json(), stage=2), timeout=60)
            assert rpc_outcome(channel, INFER, VALID_INFER)[0] == grpc.StatusCode.OK
            yield channel, stub


def _check(code, details):
    assert code in ALLOWED, (code, details)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutated([VALID_INFER, NESTED]))
def test_live_server_survives_mutated_infer(live, data):
    channel, _ = live
    _check(*rpc_outcome(channel, INFER, data))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutated([VALID_PREPARE]))
def test_live_server_survives_mutated_prepare(live, data):
    channel, _ = live
    _check(*rpc_outcome(channel, PREPARE, data))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_live_server_survives_random_bytes(live, data):
    channel, _ = live
    for method in (INFER, PREPARE):
        _check(*rpc_outcome(channel, method, data))


def test_live_server_still_serves_after_fuzzing(live):
    channel, stub = live
    assert stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthReply.SERVING
    assert rpc_outcome(channel, INFER, VALID_INFER)[0] == grpc.StatusCode.OK
    assert stub.Load(pb.LoadRequest(), timeout=5).load.in_flight == 0
