"""Many frames through a pipeline whose stage is held by two replicas (real tier servers):
answers in frame order equal the whole model's, frames split by the replicas' shares, and a
replica that leaves mid-stream loses no frame."""
import asyncio

import pytest
import torch

from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.replicas import Dispatch, PipelineError, ReplicaPipeline
from tiercut.runtime.stageplan import StagePlan, model_graph
from tiercut.zoo import resolve

MODEL = "digits_cnn"


@pytest.fixture(scope="module")
def setup():
    graph = model_graph(MODEL)
    names = [n.name for n in graph.compute_nodes]
    assignment = {n: (1 if i < 5 else 2) for i, n in enumerate(names)}  # conv1..pool | rest
    plan = StagePlan.from_assignment(MODEL, assignment, ("camera", "boards", "box"))
    model = resolve(MODEL).build()
    g = torch.Generator().manual_seed(3)
    frames = [(torch.rand(1, 1, 8, 8, generator=g),) for _ in range(24)]
    with torch.inference_mode():
        want = [model(*f) for f in frames]
    return plan, frames, want


def test_frames_come_back_in_order_split_by_share(setup):
    plan, frames, want = setup
    servers = [serve_in_thread([MODEL], threads=1) for _ in range(3)]
    a, b, box = (s.endpoint for s in servers)

    async def go():
        async with ReplicaPipeline(plan, [[(a, 2.0), (b, 1.0)], [(box, 1.0)]]) as pipe:
            return await pipe.run(frames, in_flight=4, warmup=3)
    try:
        result = asyncio.run(go())
    finally:
        for s in servers:
            s.stop(0)
    assert all(torch.equal(y, w) for y, w in zip(result.outputs, want))
    counts = result.frames_per_replica
    assert counts[a] + counts[b] == 24 and counts[box] == 24 and counts[a] >= counts[b]
    assert result.fell_back == 0 and result.throughput > 0
    assert set(result.utilisation) >= {box} and all(0 < u <= 1.5 for u in
                                                    result.utilisation.values())


def test_a_replica_that_leaves_loses_no_frame(setup):
    plan, frames, want = setup
    servers = [serve_in_thread([MODEL], threads=1) for _ in range(3)]
    a, b, box = (s.endpoint for s in servers)

    async def go():
        async with ReplicaPipeline(plan, [[(a, 1.0), (b, 1.0)], [(box, 1.0)]],
                                   deadline_s=20.0) as pipe:
            first = await pipe.run(frames[:8], in_flight=2, warmup=2)
            servers[1].stop(0)  # replica b leaves
            second = await pipe.run(frames[8:], in_flight=2)
            return first, second
    try:
        first, second = asyncio.run(go())
    finally:
        for s in servers:
            s.stop(0)
    got = first.outputs + second.outputs
    assert all(torch.equal(y, w) for y, w in zip(got, want))
    assert second.failed_over + second.fell_back >= 1  # b's frames went elsewhere
    assert not any(t.server == b for m in second.measurements for t in m.servers)


def test_bad_replicas_are_refused_by_name(setup):
    plan, frames, _ = setup
    with pytest.raises(PipelineError, match="give the replicas of its 2 stages"):
        ReplicaPipeline(plan, [[("127.0.0.1:1", 1.0)]])
    with pytest.raises(PipelineError, match="stage 1 .* no replica"):
        ReplicaPipeline(plan, [[], [("127.0.0.1:1", 1.0)]])
    with pytest.raises(PipelineError, match="share -1"):
        ReplicaPipeline(plan, [[("127.0.0.1:1", -1)], [("127.0.0.1:2", 1.0)]])
    with pytest.raises(PipelineError, match="holds two stages"):
        ReplicaPipeline(plan, [[("127.0.0.1:1", 1)], [("127.0.0.1:1", 1.0)]])
    with pytest.raises(PipelineError, match="not a \\(host:port, share\\) pair"):
        ReplicaPipeline(plan, [["x"], [("127.0.0.1:2", 1.0)]])
    with pytest.raises(PipelineError, match="'x' is not host:port"):
        ReplicaPipeline(plan, [[("x", 1)], [("127.0.0.1:2", 1.0)]])
    pipe = ReplicaPipeline(plan, [[("127.0.0.1:1", 1)], [("127.0.0.1:2", 1.0)]])
    with pytest.raises(PipelineError, match="in_flight must be"):
        asyncio.run(pipe.run(frames, in_flight=0))


def test_dispatch_keeps_the_shares_and_routes_around_a_replica_that_falls_behind():
    d = Dispatch([2.0, 1.0])
    picks = [d.pick() for _ in range(9)]  # nothing answered yet: frames pile up by share
    assert picks.count(0) == 6 and picks.count(1) == 3
    assert picks[:3] in ([0, 1, 0], [0, 0, 1], [1, 0, 0])  # interleaved, not in a burst
    for i in picks:
        d.done(i)
    assert d.pick() == 0  # one frame at a time: the largest share (the fastest)
    d.done(0)
    stuck = Dispatch([1.0, 1.0, 1.0])
    first = stuck.pick()  # this replica never answers
    later = []
    for _ in range(6):
        i = stuck.pick()
        later.append(i)
        stuck.done(i)
    assert first not in later  # the others take its frames


def test_a_replica_unreachable_at_the_start_is_named(setup):
    plan, frames, want = setup
    with serve_in_thread([MODEL], threads=1) as a, serve_in_thread([MODEL], threads=1) as box:
        async def go(first):
            async with ReplicaPipeline(plan, [[(first, 1.0)], [(box.endpoint, 1.0)]]) as pipe:
                return await pipe.run(frames[:2], in_flight=1)
        with pytest.raises(PipelineError, match=r"stage 1 \(boards\) replica 127.0.0.1:1 does "
                                                r"not answer.*start it, or plan without it"):
            asyncio.run(go("127.0.0.1:1"))
        got = asyncio.run(go(a.endpoint))  # the servers that answered still serve
    assert all(torch.equal(y, w) for y, w in zip(got.outputs, want))
