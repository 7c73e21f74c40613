"""One request's layer range fanned out to several real tier servers (RunPart), the parts
gathered: the stitched answer equals the undivided model bit for bit, a part whose server is
gone or silent is recomputed elsewhere (or here), and bad RunPart requests are refused with a
status naming the bad value while the server goes on serving."""
import re
import socket
import time

import grpc
import pytest
import torch

from tiercut.graph.split import node_values
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime import wire
from tiercut.runtime.fanout import LOCAL, FanOut, FanOutError
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.parts import spatial_run
from tiercut.runtime.stageplan import model_graph

pytestmark = pytest.mark.slow

MODEL, FIRST, LAST = "resnet18", "conv1", "layer1_1_relu_1"  # 3x224x224 -> 64x56x56


@pytest.fixture(scope="module")
def servers():
    started = [serve_in_thread([MODEL], threads=1) for _ in range(3)]
    yield started
    for s in started:
        s.stop(0)


@pytest.fixture(scope="module")
def case(servers):
    """The run's source (a random input) and the undivided model's value of LAST on it."""
    graph = model_graph(MODEL)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    out = node_values(graph, x)
    assert spatial_run(MODEL, FIRST, LAST).source == "x"
    return x, out[LAST]


def free_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_parts_on_three_servers_equal_the_undivided_run(servers, case):
    x, ref = case
    eps = [s.endpoint for s in servers]
    with FanOut(eps, MODEL, FIRST, LAST) as fan:
        for parts, assign in ((fan.spatial.grid_parts(2, 2), None),
                              (fan.spatial.row_parts([10, 30]), [2, eps[0], 1])):
            y, report = fan.run(x, parts, assign)
            assert torch.equal(y, ref)
            assert not report.recomputed
            want = assign or [0, 1, 2, 0]
            assert [p.endpoint for p in report.parts] == [
                eps[a] if isinstance(a, int) else a for a in want]
            assert all(p.compute_s > 0 and p.wall_s >= p.compute_s for p in report.parts)
            # float32 raw frames: the crop with its halo up, the part's rectangle back
            for p, part in zip(report.parts, parts):
                (r0, r1), (c0, c1) = part.source
                assert p.bytes_sent >= 4 * 3 * (r1 - r0) * (c1 - c0)
                (r0, r1), (c0, c1) = part.out
                assert p.bytes_received >= 4 * 64 * (r1 - r0) * (c1 - c0)


def test_a_part_assigned_local_is_computed_here_beside_the_others(servers, case):
    """The coordinator's own share of a division: no wire, no bytes, not a recomputation."""
    x, ref = case
    with FanOut([servers[0].endpoint], MODEL, FIRST, LAST) as fan:
        y, report = fan.run(x, fan.spatial.row_parts([20]), [LOCAL, 0])
        assert torch.equal(y, ref)
        here, there = report.parts
        assert here.local and here.assigned == LOCAL and not here.recomputed
        assert here.bytes_sent == 0 and here.bytes_received == 0 and here.compute_s > 0
        assert there.endpoint == servers[0].endpoint and there.bytes_sent > 0
        with pytest.raises(FanOutError, match="or 'local'"):
            fan.run(x, fan.spatial.row_parts([20]), ["127.0.0.1:9", 0])


def test_a_part_whose_server_is_gone_silent_or_stuck_is_recomputed_elsewhere(servers, case):
    x, ref = case
    live = [s.endpoint for s in servers[:2]]
    stuck = servers[2]
    dead = free_port()
    with socket.socket() as silent:  # listens, never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"127.0.0.1:{silent.getsockname()[1]}"
        eps = [live[0], dead, live[1], mute, stuck.endpoint]
        with FanOut(eps, MODEL, FIRST, LAST, deadline_s=1.0, retry_after_s=30) as fan:
            parts = fan.spatial.row_parts([12, 24, 36, 48])
            # the stuck server's event loop is held for 3 s: its part gets no answer in time
            stuck._loop.call_soon_threadsafe(time.sleep, 3.0)
            y, report = fan.run(x, parts, range(5))
    assert torch.equal(y, ref)
    assert [p.index for p in report.recomputed] == [1, 3, 4]
    assert [p.endpoint for p in report.parts] == [live[0], live[1], live[1], live[0], live[0]]
    assert report.parts[1].assigned == dead and not report.parts[1].local
    assert report.parts[1].errors == (report.parts[1].errors[0],)
    assert report.parts[1].errors[0].startswith(f"{dead} answered UNAVAILABLE")
    assert report.parts[3].errors[0].startswith(f"{mute} answered ")  # refused or timed out
    assert report.parts[4].errors == (f"{stuck.endpoint} answered DEADLINE_EXCEEDED: "
                                      "Deadline Exceeded",)
    assert report.parts[4].wall_s >= 1.0


def test_a_stopped_server_then_none_left_the_parts_finish_here(case):
    x, ref = case
    a, b = serve_in_thread([MODEL], threads=1), serve_in_thread([MODEL], threads=1)
    eps = [a.endpoint, b.endpoint]
    try:
        with FanOut(eps, MODEL, FIRST, LAST, retry_after_s=30) as fan:
            parts = fan.spatial.row_parts([28])
            assert not fan.run(x, parts)[1].recomputed
            b.stop(0)
            y, report = fan.run(x, parts)
            assert torch.equal(y, ref)
            assert [(p.index, p.endpoint) for p in report.recomputed] == [(1, a.endpoint)]
            a.stop(0)
            y, report = fan.run(x, parts)  # b is skipped (failed within 30 s), a fails
            assert torch.equal(y, ref)
            assert [p.endpoint for p in report.parts] == [LOCAL, LOCAL]
            assert f"{a.endpoint} answered UNAVAILABLE" in report.parts[0].errors[0]
            assert "skipped" in report.parts[0].errors[1]
            assert report.parts[0].compute_s > 0 and report.bytes_received == 0
        with FanOut(eps, MODEL, FIRST, LAST, fallback=False) as fan:
            with pytest.raises(FanOutError, match="every endpoint failed: .*UNAVAILABLE"):
                fan.run(x, fan.spatial.row_parts([28]))
    finally:
        a.stop(0)
        b.stop(0)


def test_the_fan_out_checks_what_it_is_given(servers, case):
    x, _ = case
    eps = [s.endpoint for s in servers[:2]]
    with FanOut(eps, MODEL, FIRST, LAST) as fan:
        parts = fan.spatial.row_parts([28])
        with pytest.raises(FanOutError, match=r"source .* is 'x', tensor \[1, 3, 224, 224\]"):
            fan.run(x[:, :, :100], parts)
        with pytest.raises(FanOutError, match="leave 1568 output positions"):
            fan.run(x, parts[:1])
        with pytest.raises(FanOutError, match="assign\\[1\\] is 'nowhere:1'"):
            fan.run(x, parts, [0, "nowhere:1"])
        other = spatial_run(MODEL, FIRST, "maxpool").row_parts([28])
        with pytest.raises(FanOutError, match="parts\\[0\\] is not a part of"):
            fan.run(x, other)
    with pytest.raises(FanOutError, match="name a host twice"):
        FanOut([eps[0], eps[0]], MODEL, FIRST, LAST)


# ---- bad requests -----------------------------------------------------------------------

GOOD = ((0, 4), (0, 56))  # full width: narrower tiles may round differently (~1e-6)


def request(x, out=GOOD, model=MODEL, first=FIRST, last=LAST, crop=None, **kw):
    run = spatial_run(MODEL, FIRST, LAST)
    (sr0, sr1), (sc0, sc1) = run.part(GOOD).source
    req = pb.RunPartRequest(model=model, first=first, last=last, **kw)
    if out is not None:
        (req.out.row_lo, req.out.row_hi), (req.out.col_lo, req.out.col_hi) = out
    right = x[:, :, sr0:sr1, sc0:sc1]
    crop = right if crop is None else crop(right) if callable(crop) else crop
    if isinstance(crop, torch.Tensor):
        wire.fill_value(req.source, crop)
    elif crop != "none":
        req.source.CopyFrom(crop)
    return req


BAD = [  # (what is changed, status, what the message says)
    (dict(model="vgg16"), "NOT_FOUND", r"model 'vgg16' is not hosted here; this server hosts "
                                       r"\['resnet18'\]"),
    (dict(first="nope"), "INVALID_ARGUMENT", r"run end 'nope' is not a node of 'resnet18'; "
                                             r"nodes are e\.g\. \['conv1'"),
    (dict(last="layer1_0_conv2"), "INVALID_ARGUMENT", r"\['maxpool'\] are read after the run"),
    (dict(first="fc", last="fc"), "INVALID_ARGUMENT", r"node .fc. \(linear\) cannot be tiled"),
    (dict(first="x" * 300), "INVALID_ARGUMENT", r"run end first='xxx.* is not a node name"),
    (dict(out=((50, 60), (0, 56))), "INVALID_ARGUMENT",
     r"part \(\(50, 60\), \(0, 56\)\) is not a non-empty rectangle of 'layer1_1_relu_1''s "
     r"56x56 output"),
    (dict(out=((3, 3), (0, 56))), "INVALID_ARGUMENT", r"not a non-empty rectangle"),
    (dict(out=None), "INVALID_ARGUMENT", r"no output rectangle"),
    (dict(crop=torch.zeros(1, 3, 5, 5)), "INVALID_ARGUMENT",
     r"the source should be tensor \[1, 3, (\d+), (\d+)\] float32 \(the run's source 'x' "
     r"cropped to rows and columns \(\(0, \1\), \(0, \2\)\)\), got tensor \[1, 3, 5, 5\] "
     r"float32"),
    (dict(crop=lambda right: right.double()), "INVALID_ARGUMENT",
     r"should be tensor \[1, 3, (\d+), (\d+)\] float32 .*got tensor \[1, 3, \1, \2\] float64"),
    (dict(crop=pb.Value(tensor=b"not a frame at all")), "INVALID_ARGUMENT",
     r"source: undecodable tensor frame"),
    (dict(crop=pb.Value(int=3)), "INVALID_ARGUMENT", r"should be tensor .*, got int"),
    (dict(crop="none"), "INVALID_ARGUMENT", r"no source; send the run's source 'x' cropped"),
    (dict(reply_codec="nope"), "INVALID_ARGUMENT", r"reply_codec: .*nope"),
]


def test_bad_requests_are_refused_by_name_and_the_server_keeps_serving(servers, case):
    x, ref = case
    endpoint = servers[0].endpoint
    with grpc.insecure_channel(endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        good = request(x)

        def still_serving():
            reply = stub.RunPart(good, timeout=30)
            y, _ = wire.from_value(reply.output)
            assert torch.equal(y, ref[:, :, 0:4, :])
            assert reply.server == endpoint and reply.compute_s > 0

        still_serving()
        for change, code, message in BAD:
            with pytest.raises(grpc.RpcError) as caught:
                stub.RunPart(request(x, **change), timeout=30)
            assert caught.value.code().name == code, (change, caught.value.details())
            assert re.search(message, caught.value.details()), \
                caught.value.details()
            still_serving()
        garbage = channel.unary_unary("/tiercut.runtime.TierServer/RunPart")
        with pytest.raises(grpc.RpcError) as caught:
            garbage(b"\xff\xff\xff garbage", timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid RunPartRequest" in caught.value.details()
        still_serving()
