"""The in-band cancel on InferStream (InferRequest.cancel), against real tier servers: a request
still waiting for a worker is dropped unrun and answered CANCELLED; one already computing
finishes and is answered; a cancel for an id not in flight changes nothing; and redundant
copies that lose while queued are cancelled by send_redundant, every request answered once
with the whole model's output. Stages wait on gates the tests open (test_overload.Gate), so
"queued" and "computing" are exact, not timing; every wait is bounded."""
import asyncio

import grpc
import pytest
import torch

from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.codecs import DEFAULT_LIMITS
from tiercut.runtime import wire
from tiercut.runtime.client import SplitClient
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stream import METHOD, CallFailed, InferStream

from assignments import assert_same
from test_overload import PLAN, Gate, _load, _request, _wait, gated  # noqa: F401 (a fixture)
from test_runtime import SKIPPY, whole

pytestmark = pytest.mark.slow


def _with_id(request, rid):
    out = pb.InferRequest()
    out.CopyFrom(request)
    out.request_id = rid
    return out


def _output(reply):
    values, _ = wire.decode_values(reply.outputs, DEFAULT_LIMITS)
    return values["reshape"]


def test_queued_request_cancelled_is_never_computed_and_a_computing_one_finishes(gated):
    gate, make = gated
    _, x, expected = whole(SKIPPY)
    server, stub, channel = make(workers=1)
    request = _request(PLAN, x)

    async def scenario():
        async with grpc.aio.insecure_channel(server.endpoint) as aio:
            stream = InferStream(aio)
            long = asyncio.create_task(stream.infer(_with_id(request, "long"), 30))
            await asyncio.to_thread(_wait, lambda: gate.runs == 1, "the long one computing")
            queued = asyncio.create_task(stream.infer(_with_id(request, "queued"), 30))
            await asyncio.to_thread(_wait, lambda: _load(stub).queue_depth == 1,
                                    "the second one queued behind it")
            await stream.cancel("queued")
            with pytest.raises(CallFailed) as info:
                await queued
            assert info.value.code == grpc.StatusCode.CANCELLED, info.value
            assert "cancelled the request before it started" in info.value.details
            assert stream.cancel("queued") is None  # answered: nothing left to cancel
            await stream.cancel("long")  # computing: it finishes and is answered
            # a request read after that cancel shows the server has read the cancel too
            after = asyncio.create_task(stream.infer(_with_id(request, "after"), 30))
            await asyncio.to_thread(_wait, lambda: _load(stub).queue_depth == 1, "after queued")
            gate.open()
            return await long, await after

    long, after = asyncio.run(scenario())
    for reply in (long, after):
        assert torch.equal(_output(reply), expected[0])
    _wait(lambda: _load(stub).in_flight == 0, "every request answered")
    load = _load(stub)
    assert gate.runs == 2  # long and after; the cancelled one never ran
    assert (load.cancelled, load.served, load.expired, load.queue_depth) == (1, 2, 0, 0)
    channel.close()


def test_cancel_for_an_unknown_id_is_ignored_and_the_stream_goes_on(gated):
    gate, make = gated
    gate.open()
    _, x, expected = whole(SKIPPY)
    server, stub, channel = make(workers=1)
    request = _request(PLAN, x)
    cancel = pb.InferRequest(request_id="nobody", cancel=True)
    sent = [cancel, _with_id(request, "a"), pb.InferRequest(cancel=True),
            pb.InferRequest(request_id="a", cancel=True), _with_id(request, "b"), cancel]
    stream = channel.stream_stream(METHOD, request_serializer=pb.InferRequest.SerializeToString,
                                   response_deserializer=pb.InferStreamReply.FromString)
    answers = {a.request_id: a for a in stream(iter(sent), timeout=30)}
    assert sorted(answers) == ["a", "b"]  # one answer per request; none for a cancel
    for answer in answers.values():
        assert answer.code == 0, answer.message
        assert torch.equal(_output(answer.reply), expected[0])
    load = _load(stub)
    assert load.cancelled == 0 and load.served == 2 and gate.runs == 2
    with pytest.raises(grpc.RpcError) as info:  # a unary Infer has its own cancel
        stub.Infer(pb.InferRequest(plan_id=PLAN.plan_id, stage=1, cancel=True), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cancel is for InferStream only" in info.value.details()
    channel.close()


@pytest.fixture
def second_gate():
    gate, servers = Gate(), []

    def make(**kwargs):
        servers.append(serve_in_thread([SKIPPY], backend=gate.name, **kwargs))
        return servers[-1]

    yield gate, make
    gate.open()
    for s in servers:
        s.stop(0)


def test_redundant_copies_that_lose_while_queued_are_cancelled_unrun(gated, second_gate):
    """Host b is busy with a long request, so every copy sent to it queues; host a answers
    every request first, and each of b's copies is cancelled before it starts."""
    n = 6
    gate_a, make_a = gated
    gate_b, make_b = second_gate
    _, x, expected = whole(SKIPPY)
    a, stub_a, channel_a = make_a(workers=1)
    b = make_b(workers=1)
    with grpc.insecure_channel(b.endpoint) as channel_b:
        stub_b = pb_grpc.TierServerStub(channel_b)
        stub_b.Prepare(pb.PrepareRequest(plan_json=PLAN.to_json(), stage=1), timeout=60)
        blocker = stub_b.Infer.future(_request(PLAN, x), timeout=60)
        _wait(lambda: gate_b.runs == 1, "host b busy")
        with SplitClient(PLAN, [[a.endpoint, b.endpoint]], redundant=2) as client:
            client.prepare()

            async def burst():
                tasks = [asyncio.create_task(client.ainfer(*x)) for _ in range(n)]
                await asyncio.to_thread(
                    _wait, lambda: _load(stub_a).in_flight == n and
                    _load(stub_b).queue_depth == n, "both copies of every request sent")
                gate_a.open()
                done = await asyncio.gather(*tasks)
                # the cancels are written after the answers: wait for them before closing
                # (closing the streams would drop b's copies too, but not as cancelled)
                await asyncio.to_thread(_wait, lambda: _load(stub_b).cancelled == n,
                                        "b's copies cancelled")
                await client.aclose()
                return done

            done = asyncio.run(burst())
        assert len({m.request_id for _, m in done}) == n
        for out, m in done:
            assert_same(out, expected)
            assert not m.fallback and m.endpoint == a.endpoint
        load_b = _load(stub_b)
        assert load_b.queue_depth == 0 and load_b.in_flight == 1  # only the blocker left
        gate_b.open()
        blocker.result(timeout=30)
        _wait(lambda: _load(stub_b).in_flight == 0, "b idle")
        load_a, load_b = _load(stub_a), _load(stub_b)
    assert gate_b.runs == 1 and load_b.served == 1  # none of b's copies was computed
    assert gate_a.runs == n and load_a.served == n and load_a.cancelled == 0
    channel_a.close()
