"""Redundant requests: the Joshi & Soljanin dichotomy in the simulator, the fits, break_even,
and send_redundant against real tier servers."""
from __future__ import annotations

import asyncio
import random

import grpc
import numpy as np
import pytest
import torch

from tiercut.redundancy import (HyperExponential, ShiftedExponential, break_even,
                                fit_hyperexponential, fit_shifted_exponential, log_concavity,
                                simulate)

FAST = dict(requests=20_000, seed=3)


def test_log_convex_service_redundancy_helps_at_low_load_up_to_a_break_even():
    dist = ShiftedExponential(1.0, 1.0)  # random part as large as the shift
    low = [simulate(dist, 3, k, 0.1, **FAST).p99 for k in (1, 2)]
    high = [simulate(dist, 3, k, 0.8, **FAST).p99 for k in (1, 2)]
    assert low[1] < 0.9 * low[0]
    assert high[1] > high[0]


def test_log_concave_service_one_copy_is_best_at_every_load():
    dist = ShiftedExponential(1.0, 20.0)  # near-deterministic
    for load in (0.1, 0.4, 0.7):
        one, two = (simulate(dist, 3, k, load, **FAST).p99 for k in (1, 2))
        assert two >= 0.9 * one, (load, one, two)


def test_cancel_on_start_and_late_copies_run():
    dist = HyperExponential(0.9, 10.0, 0.5)
    one = simulate(dist, 3, 1, 0.3, **FAST).p99
    assert simulate(dist, 3, 2, 0.3, issue_after_s=0.2, **FAST).p99 < one
    start = simulate(dist, 3, 2, 0.3, cancel="start", **FAST)
    assert start.p99 <= one * 1.05 and start.busy < 0.35


def test_fits_recover_known_parameters():
    rng = np.random.default_rng(0)
    x = ShiftedExponential(0.5, 4.0).sample(rng, 50_000)
    for method in ("mle", "moments"):
        fit = fit_shifted_exponential(x, method)
        assert fit.shift == pytest.approx(0.5, rel=0.02)
        assert fit.rate == pytest.approx(4.0, rel=0.03)
    h = HyperExponential(0.8, 10.0, 0.5)
    fit = fit_hyperexponential(h.sample(rng, 200_000))
    assert fit.mean == pytest.approx(h.mean, rel=0.03)
    assert fit.var == pytest.approx(h.var, rel=0.1)
    assert log_concavity(x) > 0.5 and log_concavity(h.sample(rng, 50_000)) < -0.5
    with pytest.raises(ValueError, match="scv > 1"):
        fit_hyperexponential(x)


def test_break_even_is_where_the_curves_cross():
    dist = ShiftedExponential(1.0, 1.0)
    kw = dict(requests=10_000, seed=5)
    b = break_even(dist, 3, 2, tol=0.02, **kw)
    assert 0.1 < b < 0.9
    below = [simulate(dist, 3, k, b - 0.08, **kw).p99 for k in (1, 2)]
    above = [simulate(dist, 3, k, b + 0.08, **kw).p99 for k in (1, 2)]
    assert below[1] < below[0] and above[1] > above[0]


def test_simulator_names_bad_values():
    with pytest.raises(ValueError, match="k must be an int in 1..n=3, got 4"):
        simulate(ShiftedExponential(0, 1), 3, 4, 0.5)
    with pytest.raises(ValueError, match="issue_after_s"):
        simulate(ShiftedExponential(0, 1), 3, 2, 0.5, issue_after_s=float("nan"))


# --- the runtime: send_redundant against real tier servers -----------------------------------

def _setup():
    from tiercut.runtime import wire
    from tiercut.runtime import tiercut_pb2 as pb
    from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph

    graph = model_graph("digits_cnn")
    plan = StagePlan.from_assignment("digits_cnn", {n.name: 1 for n in graph.compute_nodes},
                                     ("device", "edge"))
    x = example_inputs(plan)
    request = pb.InferRequest(plan_id=plan.plan_id, stage=1, request_id="q", codec="raw")
    wire.encode_values(dict(zip(graph.inputs, x)), "raw", request.values)
    return plan, request


async def _prepare(channels, plan, hosts):
    from tiercut.runtime.preparing import prepare_request
    req = prepare_request(plan, plan.to_json(), 1, (), "raw")
    for h in hosts:
        await channels.get(h)[1].Prepare(req, timeout=30)


@pytest.fixture(scope="module")
def servers():
    from tiercut.runtime.launch import serve_in_thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    made = [serve_in_thread(["digits_cnn"], threads=1) for _ in range(2)]
    yield made
    for s in made:
        s.stop()
    torch.set_num_threads(threads)


def _run(coro_fn):
    from tiercut.runtime.hosts import Channels
    from tiercut.runtime.transport import MAX_MESSAGE_BYTES

    async def main():
        channels = Channels(None, (), MAX_MESSAGE_BYTES)
        try:
            return await coro_fn(channels)
        finally:
            await channels.close()
    return asyncio.run(main())


def test_send_redundant_answers_bit_for_bit_as_one_copy(servers):
    from tiercut.runtime.redundant import send_redundant
    plan, request = _setup()
    hosts = [s.endpoint for s in servers]

    async def go(channels):
        await _prepare(channels, plan, hosts)
        plain = await channels.get(hosts[0])[2].infer(request, 30)
        out = []
        for k, after in ((1, 0.0), (2, 0.0), (2, 0.005)):
            out.append(await send_redundant(lambda h: channels.get(h)[2], request, hosts, k,
                                            after, 30, random.Random(k)))
        return plain, out

    plain, out = _run(go)
    for reply, host, issued in out:
        assert host in hosts and 1 <= issued <= 2
        assert plain.outputs
        assert [v.SerializeToString() for v in reply.outputs] == [
            v.SerializeToString() for v in plain.outputs]


def test_one_of_two_hosts_down_still_answers(servers):
    from tiercut.runtime.redundant import send_redundant
    from tiercut.runtime.stream import CallFailed
    plan, request = _setup()
    good, dead = servers[0].endpoint, "127.0.0.1:1"

    async def go(channels):
        await _prepare(channels, plan, [good])
        for hosts in ([dead, good], [good, dead]):
            reply, host, issued = await send_redundant(lambda h: channels.get(h)[2], request,
                                                       hosts, 2, 0.05, 30)
            assert host == good and reply.outputs
        with pytest.raises(CallFailed) as info:
            await send_redundant(lambda h: channels.get(h)[2], request, [dead], 1, 0.0, 5)
        return info.value.code

    assert _run(go) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_send_redundant_names_bad_k_and_issue_after():
    from tiercut.runtime.redundant import send_redundant
    _, request = _setup()
    for k, after, match in ((0, 0.0, "k=0"), (3, 0.0, r"len\(hosts\)=2"),
                            (1, -1.0, "issue_after_s=-1.0"),
                            (1, float("inf"), "issue_after_s=inf")):
        with pytest.raises(ValueError, match=match):
            asyncio.run(send_redundant(lambda h: None, request, ["a", "b"], k, after, 1))


def test_never_cancelling_serves_every_copy():
    """cancel="never": each copy is served in full, so 2 copies keep the servers twice as
    busy and cost more at p99 than cancelling on the first finish."""
    from tiercut.redundancy import ShiftedExponential, simulate
    dist = ShiftedExponential(1.0, 1.0)
    one = simulate(dist, 3, 1, 0.3, requests=20_000, seed=1)
    never = simulate(dist, 3, 2, 0.3, requests=20_000, seed=1, cancel="never")
    finish = simulate(dist, 3, 2, 0.3, requests=20_000, seed=1, cancel="finish")
    assert abs(never.busy / one.busy - 2.0) < 0.1
    assert never.p99 > finish.p99


def test_cancelling_queued_copies_lies_between_never_and_finish():
    """cancel="queued" (the runtime's InferRequest.cancel): queued losers dropped, a loser in
    service runs to its end; so it costs more than stopping it, less than serving all."""
    from tiercut.redundancy import ShiftedExponential, simulate
    dist = ShiftedExponential(1.0, 1.0)
    r = {c: simulate(dist, 3, 2, 0.5, requests=20_000, seed=1, cancel=c)
         for c in ("finish", "queued", "never")}
    assert r["finish"].p99 < r["queued"].p99 < r["never"].p99
    assert r["finish"].busy < r["queued"].busy < r["never"].busy
    with pytest.raises(ValueError, match="'queued'"):
        simulate(dist, 3, 2, 0.5, requests=100, cancel="sometimes")
