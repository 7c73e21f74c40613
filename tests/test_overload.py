"""Limits and load shedding: a flooded server refuses at once, serves the rest, stays healthy.

Stages here wait on a gate the test opens (no sleeps that pretend to be slow), so "in flight"
is exact. Every wait is bounded.
"""
import itertools
import threading
import time

import grpc
import pytest

from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime import wire
from tiercut.runtime.backends import register_backend
from tiercut.runtime.client import SplitClient
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import StagePlan

from assignments import assert_same
from test_runtime import SKIP, SKIPPY, TIERS, whole

pytestmark = pytest.mark.slow
PLAN = StagePlan.from_assignment(SKIPPY, {n: min(s, 1) for n, s in SKIP.items()}, TIERS[:2])
_names = itertools.count()


class Gate:
    """A backend whose stage waits until ``open()``; counts the runs that started."""

    def __init__(self):
        self.event, self.runs, self.lock = threading.Event(), 0, threading.Lock()
        self.name = f"test-gate-{next(_names)}"
        register_backend(self.name, lambda plan, lay, k: _Gated(lay.stages[k], self))

    def open(self):
        self.event.set()


class _Gated:
    def __init__(self, stage, gate):
        self.stage, self.gate, self.inputs, self.outputs = stage, gate, stage.inputs, stage.outputs

    def run(self, env):
        with self.gate.lock:
            self.gate.runs += 1
        assert self.gate.event.wait(30), "gate never opened"
        return self.stage.run(env)


def _request(client_plan, x):
    """A valid stage-1 InferRequest for PLAN, built by a client's own encoder."""
    client = SplitClient(client_plan, ["127.0.0.1:1"], tune_malloc=False)
    env = dict(zip(client.graph.inputs, x))
    env.update(client.layout.stages[0].run(env))
    request = pb.InferRequest(plan_id=client_plan.plan_id, stage=1, request_id="r")
    wire.encode_values({v: env[v] for v in client.layout.receives[1]}, "raw", request.values)
    client.close()
    return request


def _wait(predicate, what, seconds=20):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def gated():
    gate = Gate()
    servers = []

    def make(**kwargs):
        server = serve_in_thread([SKIPPY], backend=gate.name, **kwargs)
        servers.append(server)
        channel = grpc.insecure_channel(server.endpoint)
        stub = pb_grpc.TierServerStub(channel)
        stub.Prepare(pb.PrepareRequest(plan_json=PLAN.to_json(), stage=1), timeout=60)
        return server, stub, channel

    yield gate, make
    gate.open()
    for s in servers:
        s.stop(0)


def _load(stub):
    return stub.Load(pb.LoadRequest(), timeout=5).load


def test_flood_beyond_the_bound_is_shed_at_once_and_the_rest_succeed(gated):
    gate, make = gated
    _, x, expected = whole(SKIPPY)
    server, stub, channel = make(max_in_flight=4, max_per_client=100, workers=1)
    request = _request(PLAN, x)
    admitted = [stub.Infer.future(request, timeout=60) for _ in range(4)]
    _wait(lambda: _load(stub).in_flight == 4, "4 requests in flight")
    flood = [stub.Infer.future(request, timeout=60) for _ in range(12)]
    for f in flood:  # answered while the admitted ones are still blocked: at once
        err = f.exception(timeout=20)
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "overloaded: 4 requests in flight, the most it takes is 4" in err.details()
        trailer = dict(err.trailing_metadata())
        load = wire.load_from_text(trailer[wire.LOAD_TRAILER])
        assert load.in_flight == 4 and load.max_in_flight == 4
    assert not any(f.done() for f in admitted)
    gate.open()
    for f in admitted:
        assert {o.name for o in f.result(timeout=30).outputs} == {"reshape"}
    load = _load(stub)
    assert load.in_flight == 0 and load.shed == 12 and load.served == 4
    assert gate.runs == 4  # nothing shed was computed
    assert stub.Infer(request, timeout=30).load.served == 5  # healthy after
    channel.close()


def test_per_client_bound_leaves_room_for_other_clients(gated):
    gate, make = gated
    _, x, _ = whole(SKIPPY)
    server, stub, channel = make(max_in_flight=10, max_per_client=2, workers=4)
    request = _request(PLAN, x)
    a = (("tiercut-client-id", "device-a"),)
    mine = [stub.Infer.future(request, timeout=60, metadata=a) for _ in range(2)]
    _wait(lambda: _load(stub).in_flight == 2, "2 requests in flight")
    err = stub.Infer.future(request, timeout=60, metadata=a).exception(timeout=20)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "client 'id:device-a' has 2 requests in flight" in err.details()
    other = stub.Infer.future(request, timeout=60, metadata=(("tiercut-client-id", "b"),))
    _wait(lambda: _load(stub).in_flight == 3, "the other client's request admitted")
    gate.open()
    for f in (*mine, other):
        f.result(timeout=30)
    channel.close()


def test_request_whose_deadline_passed_in_the_queue_is_not_computed(gated):
    gate, make = gated
    _, x, _ = whole(SKIPPY)
    server, stub, channel = make(max_in_flight=10, workers=1)
    request = _request(PLAN, x)
    first = stub.Infer.future(request, timeout=60)
    _wait(lambda: gate.runs == 1, "the first request computing")
    late = stub.Infer.future(request, timeout=0.2)
    assert late.exception(timeout=20).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    gate.open()
    first.result(timeout=30)
    _wait(lambda: _load(stub).in_flight == 0, "the queue to drain")
    assert gate.runs == 1  # the late request was dropped unrun
    channel.close()


def test_expired_in_queue_is_counted(gated):
    """The server side of the deadline check, without relying on gRPC cancelling the call."""
    gate, make = gated
    server, stub, channel = make(max_in_flight=10, workers=1)
    gate.open()
    srv = server.server
    p = next(iter(srv._stages.prepared.values()))
    with pytest.raises(Exception, match="deadline passed while it waited for a worker"):
        server._call(srv._compute(p, {}, "here", deadline=time.monotonic() - 1))
    assert _load(stub).expired == 1 and gate.runs == 0
    channel.close()


def test_client_finishes_locally_when_shed_and_learns_the_load(gated):
    gate, make = gated
    _, x, expected = whole(SKIPPY)
    server, stub, channel = make(max_in_flight=1, workers=1)
    busy = stub.Infer.future(_request(PLAN, x), timeout=60)
    _wait(lambda: gate.runs == 1, "the server busy")
    with SplitClient(PLAN, [server.endpoint]) as client:
        client.prepare()
        out, m = client.infer(*x)
        assert_same(out, expected)
        assert m.fallback and "RESOURCE_EXHAUSTED" in m.fallback_reason
        load = client.last_load[server.endpoint]
        assert load.in_flight == 1 and load.max_in_flight == 1 and load.utilisation == 1.0
        gate.open()
        busy.result(timeout=30)
        out, m = client.infer(*x)  # not marked down: the next request is served
        assert_same(out, expected)
        assert not m.fallback and m.endpoint == server.endpoint
    channel.close()


def test_client_fails_over_to_another_host_when_one_is_overloaded(gated):
    gate, make = gated
    _, x, expected = whole(SKIPPY)
    busy_server, stub, channel = make(max_in_flight=1, workers=1)
    busy = stub.Infer.future(_request(PLAN, x), timeout=60)
    _wait(lambda: gate.runs == 1, "the first host busy")
    with serve_in_thread([SKIPPY]) as spare:
        with SplitClient(PLAN, [[busy_server.endpoint, spare.endpoint]]) as client:
            out, m = client.infer(*x)
    assert_same(out, expected)
    assert not m.fallback and m.endpoint == spare.endpoint and m.failovers == 1
    gate.open()
    busy.result(timeout=30)
    channel.close()


def test_oversized_message_is_refused_before_decoding(gated):
    gate, make = gated
    server, stub, channel = make(max_message_bytes=1 << 16)
    big = pb.InferRequest(plan_id=PLAN.plan_id, stage=1)
    big.values.add(name="relu").value.tensor = b"\0" * (1 << 17)
    with pytest.raises(grpc.RpcError) as info:
        stub.Infer(big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _load(stub).in_flight == 0 and gate.runs == 0
    channel.close()
