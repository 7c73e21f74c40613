"""Estimators on synthetic transfers, and the adaptive client switching plans against real tier
servers on loopback."""
from __future__ import annotations

import time

import pytest
import torch

from tiercut.adapt.estimators import BandwidthEstimator, LatencyEstimator, LoadEstimator
from tiercut.adapt.policies import AdaptivePolicy, Policy


def feed(est: BandwidthEstimator, rate_bps: float, n: int, bits: float = 4e6) -> list[float]:
    return [est.add(bits, bits / rate_bps) for _ in range(n)]


def test_4x_drop_detected_within_3_requests():
    est = BandwidthEstimator()
    feed(est, 40e6, 10)
    assert est.estimate_bps == pytest.approx(40e6)
    after = feed(est, 10e6, 3)
    assert after[-1] == pytest.approx(10e6)  # followed by the third request
    rise = feed(est, 40e6, 3)
    assert rise[-1] == pytest.approx(40e6)


def test_4x_drop_followed_at_once_rise_after_a_majority():
    est = BandwidthEstimator()
    feed(est, 40e6, 10)
    assert feed(est, 10e6, 1)[-1] == pytest.approx(10e6)  # a drop costs most: followed now
    est = BandwidthEstimator()
    feed(est, 10e6, 10)
    rise = feed(est, 40e6, 3)
    assert rise[0] == pytest.approx(10e6) and rise[1] == pytest.approx(10e6)  # one fast sample
    assert rise[2] == pytest.approx(40e6)


@pytest.mark.parametrize("spike", [400e6, 50e6])
def test_single_fast_outliers_do_not_swing_the_estimate(spike):
    est = BandwidthEstimator()
    feed(est, 20e6, 8)
    for _ in range(5):  # an odd fast transfer now and then
        est.add(4e6, 4e6 / spike)
        assert est.estimate_bps == pytest.approx(20e6)
        feed(est, 20e6, 3)


@pytest.mark.parametrize("spike", [1e6, 0.2e6])
def test_single_slow_outlier_lasts_one_request(spike):
    est = BandwidthEstimator()
    feed(est, 20e6, 8)
    for _ in range(5):
        assert est.add(4e6, 4e6 / spike) == pytest.approx(spike)  # acted on at once ...
        assert feed(est, 20e6, 1)[-1] == pytest.approx(20e6)  # ... and forgotten at once
        feed(est, 20e6, 2)


def test_transfer_under_way_bounds_the_rate():
    from tiercut.adapt.estimators import Observation

    est = BandwidthEstimator()
    feed(est, 20e6, 5)
    assert est.observe(Observation(1.0, 4e6, 0.3, done=False)) == pytest.approx(20e6)  # 13 Mbit/s: within the band
    assert est.observe(Observation(1.0, 4e6, 2.0, done=False)) == pytest.approx(2e6)  # stuck
    assert len(est.samples) == 5  # a bound, not a sample
    assert feed(est, 20e6, 1)[-1] == pytest.approx(20e6)


def test_noisy_samples_harmonic_mean():
    est = BandwidthEstimator()
    # equal bits at 12 and 20 Mbit/s (within the outlier band): the harmonic mean, 15 Mbit/s
    for r in (12e6, 20e6, 12e6, 20e6, 12e6, 20e6):
        est.add(1e6, 1e6 / r)
    assert 13e6 < est.estimate_bps < 17e6


def test_small_transfers_ignored_and_staleness():
    est = BandwidthEstimator(initial_bps=5e6)
    assert est.add(100, 1e-3, now=1.0) == 5e6  # too small to say anything about rate
    assert est.stale(10.0)
    est.add(8e6, 1.0, now=9.5)
    assert not est.stale(10.0)


def test_latency_and_load_estimators():
    lat = LatencyEstimator()
    for rt in (0.050, 0.048, 0.090, 0.052):
        lat.add(rt, 0.008)
    assert lat.estimate_s == pytest.approx(0.020)
    load = LoadEstimator(alpha=0.5)
    for _ in range(8):
        load.add(4.0, queue_depth=3)
    assert load.factor == pytest.approx(4.0, rel=0.01) and load.queue_depth == 3


class Scripted(Policy):
    """Cycles through given plans, one per request."""

    observes = True

    def __init__(self, plans):
        self.plans, self.k, self.seen = list(plans), 0, []

    def observe(self, obs):
        self.seen.append(obs)

    def next_plan(self, now, backlog_s=0.0):
        p = self.plans[self.k % len(self.plans)]
        self.k += 1
        return p


@pytest.mark.slow
def test_adaptive_client_switches_plans_and_stays_exact():
    from tiercut.zoo import resolve

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the servers run: same kernels, bit-equal answers
    try:
        _switching_run(resolve("squeezenet1_1"))
    finally:
        torch.set_num_threads(threads)


def _switching_run(entry):
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.planner import Host, Scenario, baseline, parse_link
    from tiercut.planner.table import build_table
    from tiercut.measure.predict import scale_profile
    from tiercut.measure.profiler import ProfileSettings, profile_model
    from tiercut.runtime.launch import serve_in_thread

    model = entry.build()
    x = entry.example_inputs()
    with torch.inference_mode():
        expected = model(*x)
    prof = profile_model(model, x, name="squeezenet1_1",
                         settings=ProfileSettings(threads=1, repeat=1, warmup=0))
    hosts = tuple(Host(t, t, scale_profile(prof, s, t))
                  for t, s in (("device", 0.1), ("edge", 1.0), ("cloud", 5.0)))
    sc = Scenario(("device", "edge", "cloud"), hosts,
                  {("device", "edge"): parse_link("10mbit,5ms"),
                   ("edge", "cloud"): parse_link("1gbit,10ms"),
                   ("device", "cloud"): parse_link("10mbit,15ms")})
    table = build_table(sc, low_bps=1e5, high_bps=1e10)
    plans = [e.plan for e in table.entries] + [baseline(sc, "device"), baseline(sc, "cloud")]
    edge = serve_in_thread(["squeezenet1_1"], threads=1)
    cloud = serve_in_thread(["squeezenet1_1"], threads=1)
    try:
        dial = {("device", "edge"): edge.endpoint, ("device", "cloud"): cloud.endpoint,
                ("edge", "cloud"): cloud.endpoint}
        policy = Scripted(plans)
        with AdaptiveClient(policy, dial, deadline_s=60.0) as client:
            client.prepare(plans[:1])  # ahead of time; the rest on demand
            for _ in range(2 * len(plans)):
                out, m, p = client.infer(*x)
                assert torch.equal(out, expected), p.method
                assert not m.fallback
            assert client.switches >= len(plans) and len(client.clients) == len(
                {(p.route, tuple(sorted(p.assignment.items()))) for p in plans})
            assert any(o.bits > 0 and o.seconds > 0 for o in policy.seen)
        # the bandwidth-adaptive policy, fed by real measurements
        with AdaptiveClient(AdaptivePolicy(table, 10e6), dial, deadline_s=60.0) as client:
            for _ in range(4):
                out, m, p = client.infer(*x)
                assert torch.equal(out, expected)
            assert client.policy.bandwidth.estimate_bps > 0
    finally:
        edge.stop(0)
        cloud.stop(0)


def test_idle_probes_measure_the_link():
    """A Health request padded with an unknown field crosses a shaped link; its rate reaches
    the policy's estimator."""
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.launch import serve_in_thread

    server = serve_in_thread(["squeezenet1_1"], threads=1)
    try:
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=2e6, delay_s=0.010) as proxy:
            policy = AdaptivePolicy(table=None, initial_bps=40e6, probe_every_s=0.5)
            addr = "%s:%d" % proxy.address[:2]
            with AdaptiveClient(policy, {"edge": addr}, latency_s=0.010) as client:
                assert client.idle(1.5) >= 2  # one at once, then every 0.5 s of idle link
                assert policy.bandwidth.estimate_bps == pytest.approx(2e6, rel=0.3)
                assert client.idle(0.05) == 0  # the last probe was just now
    finally:
        server.stop(0)


def test_a_probe_into_a_stalled_link_reports_a_bound_and_returns_in_time():
    """At 50 kbit/s a probe needs ~10 s; idle(0.6) gives up on it at 0.6 s and tells the
    policy that the link is slower than the probe's bits over that time."""
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.launch import serve_in_thread
    from tiercut.adapt.estimators import PROBE_BITS

    server = serve_in_thread(["squeezenet1_1"], threads=1)
    try:
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=50e3, delay_s=0.0) as proxy:
            policy = AdaptivePolicy(table=None, initial_bps=40e6, probe_every_s=0.5)
            addr = "%s:%d" % proxy.address[:2]
            with AdaptiveClient(policy, {"edge": addr}) as client:
                t = time.monotonic()
                assert client.idle(0.6) == 1
                assert time.monotonic() - t < 5.0  # not the ~10 s the probe would take
                assert policy.bandwidth.estimate_bps <= PROBE_BITS / 0.3  # dropped from 40 Mbit/s
    finally:
        server.stop(0)


@pytest.mark.slow
def test_probes_go_out_during_a_long_device_run_and_the_next_request_goes_remote():
    """A guess of 10 kbit/s keeps the first ResNet-50 request on the device; while it computes
    (hundreds of ms on one thread), the idle link is probed through a 20 Mbit/s shaped link,
    the estimate rises to about that, and the next request is sent to the edge. Both answers
    are the model's, bit for bit; a probe under way when the run ends is cancelled unreported."""
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.link.shaper import ShapingProxy
    from tiercut.measure.predict import scale_profile
    from tiercut.measure.profiler import ProfileSettings, profile_model
    from tiercut.planner import Host, Scenario, parse_link
    from tiercut.planner.table import build_table
    from tiercut.runtime.launch import serve_in_thread

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server runs: same kernels, bit-equal answers
    from tiercut.zoo import resolve

    entry = resolve("resnet50")
    model = entry.build()
    x = entry.example_inputs()
    server = serve_in_thread(["resnet50"], threads=1)
    try:
        with torch.inference_mode():
            expected = model(*x)
        prof = profile_model(model, x, name="resnet50",
                             settings=ProfileSettings(threads=1, repeat=1, warmup=0))
        hosts = tuple(Host(t, t, scale_profile(prof, s, t)) for t, s in (("device", 0.1),
                                                                         ("edge", 1.0)))
        sc = Scenario(("device", "edge"), hosts, {("device", "edge"): parse_link("20mbit,5ms")})
        table = build_table(sc, low_bps=1e3, high_bps=1e10)
        assert table.best(1e4).hosts["edge"] is None  # the guess keeps it on the device
        assert table.best(20e6).hosts["edge"] is not None  # the link as it is sends it
        with ShapingProxy.in_thread(to=server.endpoint, rate_bps=20e6, delay_s=0.005) as proxy:
            policy = AdaptivePolicy(table, initial_bps=1e4, probe_every_s=0.02)
            with AdaptiveClient(policy, {"edge": "%s:%d" % proxy.address[:2]},
                                latency_s=0.005, deadline_s=60.0) as client:
                out, m, first = client.infer(*x)
                assert torch.equal(out, expected) and first.hosts["edge"] is None
                assert client.probes >= 1 and not client.probe_errors
                assert 5e6 < policy.bandwidth.estimate_bps < 60e6
                out, m, second = client.infer(*x)
                assert torch.equal(out, expected) and second.hosts["edge"] is not None
                assert not m.fallback and client.switches == 1
    finally:
        torch.set_num_threads(threads)
        server.stop(0)
