"""Hedged requests: the remote part raced against the rest of the model on the device, on real
tier servers (and the shaping proxy for a stalled link), and in the simulator."""
from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np
import pytest
import torch
import torch.fx as fx
from torch import nn

from test_planner import three_tiers
from tiercut.adapt.estimators import Observation, RateRange
from tiercut.adapt.policies import break_even_bps, build_policy
from tiercut.link.traces import BandwidthTrace
from tiercut.planner.table import Entry
from tiercut.sim.run import prepare
from tiercut.sim.simulator import SimError


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the servers run: same kernels, bit-equal answers
    yield
    torch.set_num_threads(threads)


def _all_edge(model: str):
    from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph

    graph = model_graph(model)
    plan = StagePlan.from_assignment(model, {n.name: 1 for n in graph.compute_nodes},
                                     ("device", "edge"))
    x = example_inputs(plan)
    with torch.inference_mode():
        expected = graph.module(*x)
    return plan, x, expected


@pytest.mark.slow
def test_a_hedged_request_into_a_stalled_link_is_answered_by_the_device(one_thread):
    """600 KB at 20 kbit/s would take four minutes: the device's own run answers, exactly the
    model's output, and the server goes on serving. Through AdaptiveClient too."""
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread

    plan, x, expected = _all_edge("squeezenet1_1")
    server = serve_in_thread(["squeezenet1_1"], threads=1)
    try:
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=20e3, delay_s=0.0) as proxy:
            with SplitClient(plan, ["%s:%d" % proxy.address[:2]]) as client:
                client.prepare()
                t = time.monotonic()
                out, m = client.infer(*x, hedge=True)
                assert time.monotonic() - t < 60.0
            assert torch.equal(out, expected)
            assert m.hedged and m.fallback and m.fallback_reason.startswith("hedged")
            assert m.hops[0].bytes_sent > 600_000 and m.hops[0].bytes_returned == 0
        # through AdaptiveClient (a link of its own: the first still carries the bytes sent):
        # a policy that hedges is told the transfer had not come back, a bound on the rate
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=20e3, delay_s=0.0) as proxy:
            policy = _Hedging(_edge_plan())
            with AdaptiveClient(policy, {"edge": "%s:%d" % proxy.address[:2]}) as client:
                out, m, _ = client.infer(*x)
            assert torch.equal(out, expected) and m.hedged and m.fallback
            (obs,) = policy.seen  # the time since sending, less the edge's predicted compute
            assert not obs.done and obs.bits == 8 * m.hops[0].bytes_sent
            assert obs.seconds == pytest.approx(m.hops[0].seconds
                                                - policy.plan.tier_seconds["edge"])
        with SplitClient(plan, [server.endpoint]) as direct:  # the server is unharmed
            out, m = direct.infer(*x)
            assert torch.equal(out, expected) and not m.fallback and not m.hedged
    finally:
        server.stop(0)


class _Hedging:
    """Always the same plan, always hedged; keeps what it is told."""

    observes, speed, send_fraction, unreachable = True, 1.0, 1.0, ""
    hedge, hedge_after_s = True, 0.0

    def __init__(self, plan):
        self.plan, self.seen = plan, []

    def observe(self, obs):
        self.seen.append(obs)

    def next_plan(self, now, backlog_s=0.0):
        return self.plan


def _edge_plan():
    """squeezenet1_1 all on an edge 10x this machine, as the planner describes it."""
    from tiercut.planner import Host, Scenario, baseline, parse_link
    from tiercut.measure.predict import scale_profile
    from tiercut.measure.profiler import ProfileSettings, profile_model
    from tiercut.zoo import resolve

    entry = resolve("squeezenet1_1")
    prof = profile_model(entry.build(), entry.example_inputs(), name="squeezenet1_1",
                         settings=ProfileSettings(threads=1, repeat=1, warmup=0))
    sc = Scenario(("device", "edge"), (Host("device", "device", prof),
                                       Host("edge", "edge", scale_profile(prof, 10.0, "edge"))),
                  {("device", "edge"): parse_link("10mbit,5ms")})
    return baseline(sc, "edge")


@pytest.mark.slow
def test_a_hedged_request_answered_remotely_stops_the_device(one_thread):
    """The device is busy with other work, so the server answers first; the device's run,
    when it gets the processor, stops at once."""
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread

    plan, x, expected = _all_edge("squeezenet1_1")
    server = serve_in_thread(["squeezenet1_1"], threads=1)
    release = threading.Event()
    try:
        with SplitClient(plan, [server.endpoint], device_workers=1) as client:
            client.prepare()
            busy = client._pool.submit(release.wait, 60)  # the device's one worker
            out, m = client.infer(*x, hedge=True)
            release.set()
            busy.result(timeout=10)
            assert torch.equal(out, expected)
            assert m.hedged and not m.fallback and m.endpoint == server.endpoint
            assert client._pool.submit(lambda: 7).result(timeout=30) == 7  # not held
            out, m = client.infer(*x)  # and unhedged requests go on as before
            assert torch.equal(out, expected) and not m.hedged
    finally:
        release.set()
        server.stop(0)


@pytest.mark.slow
def test_a_delayed_hedge_runs_the_device_only_when_the_answer_is_late(one_thread):
    """hedge_after_s: an answer in time leaves the device idle (its pool never starts a
    thread); into a stalled link, the device starts after the wait and answers."""
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread

    plan, x, expected = _all_edge("squeezenet1_1")
    server = serve_in_thread(["squeezenet1_1"], threads=1)
    try:
        with SplitClient(plan, [server.endpoint]) as client:
            client.prepare()
            out, m = client.infer(*x, hedge=True, hedge_after_s=30.0)
            assert torch.equal(out, expected) and m.hedged and not m.fallback
            assert m.total_s < 30.0 and not client._pool._threads  # the device never ran
            with pytest.raises(ValueError, match="hedge_after_s -1 must be a number"):
                client.infer(*x, hedge=True, hedge_after_s=-1)
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=20e3, delay_s=0.0) as proxy:
            with SplitClient(plan, ["%s:%d" % proxy.address[:2]]) as client:
                client.prepare()
                out, m = client.infer(*x, hedge=True, hedge_after_s=0.5)
            assert torch.equal(out, expected) and m.hedged and m.fallback
            assert 0.5 <= m.total_s < 60.0 and m.hops[0].bytes_returned == 0
    finally:
        server.stop(0)


def test_the_devices_run_stops_between_nodes_and_otherwise_equals_the_module():
    from tiercut.runtime.hedge import _Stopped, _StoppableRun

    torch.manual_seed(0)
    gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)))
    x = torch.randn(2, 4)
    stop = threading.Event()
    assert torch.equal(_StoppableRun(gm, stop).run(x), gm(x))
    reached = []
    gm.get_submodule("0").register_forward_hook(lambda *_: stop.set())
    gm.get_submodule("2").register_forward_hook(lambda *_: reached.append(True))
    with pytest.raises(_Stopped):
        _StoppableRun(gm, stop).run(x)
    assert not reached  # stopped after the first layer, before the last


def test_rate_range_is_the_lowest_and_highest_rate_within_its_window():
    seen = RateRange(window_s=10.0)
    assert seen.lowest(0.0) == math.inf and seen.highest(0.0) == 0.0
    for t, bits, seconds in ((0.0, 8e6, 1.0), (1.0, 1e6, 1.0), (2.0, 4e6, 1.0),
                             (12.5, 2e6, 1.0)):
        seen.observe(Observation(t, bits, seconds))
    assert seen.lowest(5.0) == 1e6 and seen.highest(5.0) == 8e6
    assert seen.lowest(11.5) == 2e6 and seen.highest(11.5) == 4e6  # t=0 and 1 have left
    seen.observe(Observation(13.0, 16e6, 0.5, done=False))  # a bound: low, never high
    assert seen.lowest(13.0) == 2e6 and seen.highest(13.0) == 2e6  # t=2 has left too
    seen.observe(Observation(13.0, 1e6, 2.0, done=False))
    assert seen.lowest(13.0) == 5e5
    seen.observe(Observation(13.5, 100.0, 1.0))  # too small to say anything
    assert seen.lowest(13.5) == 5e5 and seen.highest(13.5) == 2e6
    assert seen.highest(30.0) == 0.0
    with pytest.raises(ValueError, match="window_s"):
        RateRange(0.0)


def test_break_even_rate():
    e = Entry(plan=None, base=0.1, per_inv_bw=8e6, per_load=0.0)
    assert break_even_bps(e, local_s=0.5) == pytest.approx(8e6 / 0.4)  # 0.1 + 8e6/2e7 = 0.5
    assert break_even_bps(e, local_s=0.05) == math.inf  # never faster than the device
    assert break_even_bps(Entry(None, 0.5, 0.0, 0.0), local_s=0.5) == 0.0  # sends nothing


# --- the simulator ------------------------------------------------------------------------------

def test_hedged_policy_backs_up_a_sure_link_and_races_after_a_slow_spell():
    """40 Mbit/s with two 3 s outages. Until the first, the belief is sure of the link: each
    remote request carries a backup that never has to run (the adaptive policy's latencies
    and, to a microjoule, its energy). The first outage's requests are answered by their
    backups within about the prediction plus the all-device time; after it, remote requests
    are raced, and those sent into the second outage finish in about the all-device time."""
    from tiercut.planner import baseline

    sc = three_tiers(0)
    trace = BandwidthTrace((0.0, 20.0, 23.0, 40.0, 43.0), (40e6, 0.0, 40e6, 0.0, 40e6))
    setup = prepare(sc, trace)
    local = setup.simulator.costs(baseline(sc, "device")).latency_at(1.0)
    assert setup.setting.table.best(40e6) is not setup.setting.table.best(1e3)  # offloads
    times = np.arange(0.0, 60.0, 0.5)
    hedged = setup.simulator.run(build_policy("hedged", setup.setting), times, 60.0)
    adaptive = setup.simulator.run(build_policy("adaptive", setup.setting), times, 60.0)
    before = times < 20.0
    assert hedged.latency_s[before].tolist() == adaptive.latency_s[before].tolist()
    assert np.abs(hedged.energy_j[before] - adaptive.energy_j[before]).max() < 1e-6
    first = (times >= 20.0) & (times < 23.0)
    assert hedged.latency_s[first].max() < 2 * local < adaptive.latency_s[first].max()
    second = (times >= 40.0) & (times < 43.0)
    assert hedged.hedged > 0 and hedged.local_wins > 0
    assert hedged.latency_s[second].max() < 2 * local < adaptive.latency_s[second].max()
    assert hedged.latency_s.mean() < adaptive.latency_s.mean()
    assert hedged.energy_j.sum() > adaptive.energy_j.sum()  # the device's redundant work
    summary = hedged.summary()
    assert summary["hedged"] == hedged.hedged and summary["local_wins"] == hedged.local_wins


def test_hedged_policy_races_a_cold_start_into_an_outage():
    """No sample yet, a guess of 12 Mbit/s, and the link gone for 20 s from 0.55 s: the first
    request is raced or backed up by the device (the belief's wide prior) and answered within
    about the prediction plus the all-device time, where the policy from before the belief
    (``unsure_quantile=None``: it had seen no slow rate, and nothing backs up) waits the
    outage out."""
    from tiercut.adapt.costs import Costs
    from tiercut.adapt.estimators import BandwidthEstimator
    from tiercut.adapt.policies import HedgedPolicy
    from tiercut.planner import baseline

    sc = three_tiers(0)
    trace = BandwidthTrace((0.0, 0.55, 20.55), (12e6, 0.0, 12e6))
    setup = prepare(sc, trace)
    s = dataclasses.replace(setup.setting, initial_bps=12e6)
    local = setup.simulator.costs(baseline(sc, "device")).latency_at(1.0)
    assert s.table.best(12e6) is not s.table.best(1e3)  # the guess says send
    times = np.array([0.5, 4.0, 8.0])
    new = setup.simulator.run(build_policy("hedged", s), times, 30.0)
    old = HedgedPolicy(s.table, 12e6, Costs(sc).device_alone_s(), BandwidthEstimator(12e6),
                       unsure_quantile=None, backup_after=None)
    before = setup.simulator.run(old, times, 30.0)
    assert new.hedged >= 1 and new.local_wins >= 1
    assert new.latency_s[0] < 2 * local
    assert before.latency_s[0] > 10.0  # waited for the link
    assert new.latency_s.mean() < before.latency_s.mean() / 3


def test_a_delayed_hedge_runs_the_device_only_for_late_answers():
    """The same link, the device's run starting once the answer is one predicted latency late:
    it runs only for the requests sent into the outages, which still finish well before the
    outage ends, and the device spends less than when it races from the start."""
    from tiercut.planner import baseline

    sc = three_tiers(0)
    trace = BandwidthTrace((0.0, 20.0, 23.0, 40.0, 43.0), (40e6, 0.0, 40e6, 0.0, 40e6))
    setup = prepare(sc, trace, hedge_after=1.0)
    local = setup.simulator.costs(baseline(sc, "device")).latency_at(1.0)
    times = np.arange(0.0, 60.0, 0.5)
    late = setup.simulator.run(build_policy("hedged", setup.setting), times, 60.0)
    at_once = setup.simulator.run(
        build_policy("hedged", dataclasses.replace(setup.setting, hedge_after=0.0)), times, 60.0)
    adaptive = setup.simulator.run(build_policy("adaptive", setup.setting), times, 60.0)
    second = (times >= 40.0) & (times < 43.0)
    assert late.hedged == at_once.hedged > 0 and late.local_wins > 0
    assert late.latency_s[second].max() < 2 * local < adaptive.latency_s[second].max()
    assert late.latency_s[second].max() > at_once.latency_s[second].max()  # the wait
    assert late.energy_j.sum() < at_once.energy_j.sum()
    assert late.latency_s.mean() < adaptive.latency_s.mean()


def test_hedge_window_and_delay_are_checked():
    from tiercut.adapt.policies import HedgedPolicy, PolicyError

    with pytest.raises(SimError, match="hedge window 0"):
        prepare(three_tiers(0), BandwidthTrace((0.0,), (1e6,)), hedge_window_s=0.0)
    with pytest.raises(SimError, match="hedge delay -1 must be >= 0"):
        prepare(three_tiers(0), BandwidthTrace((0.0,), (1e6,)), hedge_after=-1)
    table = prepare(three_tiers(0), BandwidthTrace((0.0,), (1e6,))).setting.table
    with pytest.raises(PolicyError, match="hedge delay nan must be a number >= 0"):
        HedgedPolicy(table, 1e6, 1.0, after=math.nan)
    with pytest.raises(PolicyError, match="hedge delay -0.5 must be a number >= 0"):
        HedgedPolicy(table, 1e6, 1.0, backup_after=-0.5)
    with pytest.raises(ValueError, match="quantile 1.5 must be a number strictly between"):
        HedgedPolicy(table, 1e6, 1.0, unsure_quantile=1.5)


@pytest.mark.slow
def test_a_hedged_request_to_an_unreachable_host_is_answered_by_the_device(one_thread):
    import socket

    from tiercut.runtime.client import RemoteError, SplitClient

    plan, x, expected = _all_edge("squeezenet1_1")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]
    with SplitClient(plan, [dead]) as client:
        out, m = client.infer(*x, hedge=True)
    assert torch.equal(out, expected)
    assert m.hedged and m.fallback and m.fallback_reason.startswith("hedged, and")
    assert dead in m.fallback_reason
    with SplitClient(plan, [dead], fallback=False) as client:  # the setting holds when hedged
        with pytest.raises(RemoteError, match="UNAVAILABLE"):
            client.infer(*x, hedge=True)


def test_the_hedged_policy_races_only_a_device_with_time_to_spare():
    """After a slow spell a remote plan is raced while requests come seldom, and not once they
    come faster than twice its predicted latency (the device's redundant runs would queue
    them): then it is only backed up."""
    from tiercut.adapt.policies import HedgedPolicy

    sc = three_tiers(0)
    table = prepare(sc, BandwidthTrace((0.0,), (40e6,))).setting.table
    policy = HedgedPolicy(table, 40e6, local_s=10.0)
    policy.observe(Observation(0.0, 1e6, 100.0))  # 10 kbit/s once: below any break-even
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        policy.observe(Observation(t, 40e6, 1.0))  # the estimate back at 40 Mbit/s
    p = policy.next_plan(10.0)
    expected = next(e for e in table.entries if e.plan is p).cost(40e6)
    assert expected > 0.01 and policy.break_even[id(p)] > 0  # a remote plan
    assert policy.next_plan(10.0 + 10 * expected) is p and policy.hedge  # seldom: raced
    assert policy.hedge_after_s == 0.0
    t = 10.0 + 10 * expected
    for _ in range(60):  # arrivals at 1.5x its latency
        t += 1.5 * expected
        assert policy.next_plan(t) is p
    # no race: a backup, started only once the answer is late against the prediction
    assert policy.hedge and policy.hedge_after_s == pytest.approx(
        expected - policy._device_s[id(p)])


def test_the_devices_stages_run_on_the_executor_given(one_thread):
    """device_executor: stage 0 runs on the caller's threads (a CPU-capped pool in the
    benchmarks), and closing the client leaves that executor to its owner."""
    import concurrent.futures

    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread
    from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph

    graph = model_graph("squeezenet1_1")
    nodes = [n.name for n in graph.compute_nodes]
    half = len(nodes) // 2
    plan = StagePlan.from_assignment("squeezenet1_1", {n: int(i >= half)
                                                       for i, n in enumerate(nodes)},
                                     ("device", "edge"))
    x = example_inputs(plan)
    with torch.inference_mode():
        expected = graph.module(*x)
    server = serve_in_thread(["squeezenet1_1"], threads=1)
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="given-device")
    try:
        with SplitClient(plan, [server.endpoint], device_executor=pool) as client:
            out, m = client.infer(*x)
            assert torch.equal(out, expected) and m.device_s > 0 and not m.fallback
            assert [t.name for t in pool._threads] == ["given-device_0"]
            assert client._pool is pool
        assert pool.submit(lambda: 7).result(timeout=30) == 7  # still the owner's
    finally:
        pool.shutdown()
        server.stop(0)
