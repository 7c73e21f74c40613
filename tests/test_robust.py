"""The rate belief with its uncertainty, the robust policy that plans over it, the synthetic
link shapes, and the simulator telling a policy of a probe stuck on its link (issue 24)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from test_planner import three_tiers
from tiercut.adapt.estimators import EstimatorError, Observation
from tiercut.adapt.policies import POLICIES, PolicyError, RobustPolicy, build_policy, parse_policies
from tiercut.adapt.policies.base import Policy
from tiercut.adapt.uncertainty import RateBelief, expected, quantile, weighted_quantile
from tiercut.link import shapes
from tiercut.link.traces import BandwidthTrace, BandwidthTraceError
from tiercut.planner import baseline
from tiercut.sim.run import prepare

BITS = 4e6


def fed(belief: RateBelief, rates, start: float = 0.0, every: float = 1.0) -> RateBelief:
    for i, r in enumerate(rates):
        belief.add(BITS, BITS / r, start + i * every + BITS / r)
    return belief


# --- the belief ---------------------------------------------------------------------------------

def test_a_cold_belief_is_wide_and_a_steady_link_earns_a_narrow_one():
    cold = RateBelief(10e6)
    assert cold.spread(0.0) > 1.0  # nothing seen: the prior, a factor of ten either way
    assert cold.median_bps(0.0) == pytest.approx(10e6, rel=0.01)
    steady = fed(RateBelief(10e6), [20e6] * 20)
    now = steady.last_t
    flap = fed(RateBelief(10e6), [40e6, 2e6] * 10)
    assert steady.spread(now + 0.1) < cold.spread(0.0) / 1.5
    assert steady.spread(now + 0.1) < flap.spread(flap.last_t + 0.1) / 1.5
    assert steady.median_bps(now + 0.1) == pytest.approx(20e6, rel=0.05)
    assert steady.drift < cold.drift  # learnt: this link hardly moves
    # two minutes of it: the prior's drift has faded with the evidence, so the belief is
    # sure of the rate to about 30% (it was 2.3x either way while the prior stayed a floor)
    long = fed(RateBelief(10e6), [45e6] * 120)
    t = long.last_t + 0.5
    assert 30e6 < long.quantile_bps(t, 0.1) < 45e6 < long.quantile_bps(t, 0.9) < 65e6


def test_age_and_flapping_widen_the_belief_and_stale_history_is_the_prior():
    b = fed(RateBelief(10e6), [20e6] * 10)
    now = b.last_t
    assert b.spread(now + 5.0) > b.spread(now + 0.5)  # older samples say less about now
    flap = fed(RateBelief(10e6), [40e6, 2e6] * 8)
    assert flap.spread(flap.last_t + 0.5) > 1.0  # a link that flaps keeps a wide belief
    lo, hi = flap.quantile_bps(flap.last_t + 0.5, 0.1), flap.quantile_bps(flap.last_t + 0.5, 0.9)
    assert lo < 4e6 and hi > 20e6  # both of its levels are in it
    stale = now + 1000.0  # every sample has left the window: back to the prior, widened
    assert b.median_bps(stale) == pytest.approx(10e6, rel=0.01)
    assert b.spread(stale) > RateBelief(10e6).spread(0.0)


def test_a_transfer_under_way_caps_the_belief_until_a_later_sample():
    b = fed(RateBelief(10e6), [20e6] * 10)
    now = b.last_t + 1.0
    b.observe(Observation(now, BITS, 40.0, done=False))  # 4 Mbit under way for 40 s
    assert b.quantile_bps(now, 0.99) <= BITS / 40.0 * (1 + 1e-9)
    b.observe(Observation(now + 1.0, BITS, BITS / 20e6))  # a later finished transfer
    assert b.median_bps(now + 1.0) > 1e6


def test_expectations_and_quantiles_over_points():
    pts = [(1.0, 0.25), (2.0, 0.5), (4.0, 0.25)]
    assert expected(pts, lambda r: r) == pytest.approx(2.25)
    assert quantile(pts, lambda r: 1 / r, 0.5) == pytest.approx(0.5)
    assert weighted_quantile(pts, 0.1) == 1.0 and weighted_quantile(pts, 0.9) == 4.0
    # Gauss-Hermite nodes: the mean of log-rate and its variance are those of the component
    b = RateBelief(8e6)
    logs = [(math.log(r), w) for r, w in b.points(0.0)]
    mean = sum(w * x for x, w in logs)
    assert mean == pytest.approx(math.log(8e6))
    assert sum(w * (x - mean) ** 2 for x, w in logs) == pytest.approx(b.components(0.0)[0][2])


@pytest.mark.parametrize("kwargs, word", [
    (dict(window_s=-1.0), "window_s"), (dict(window_s=math.inf), "window_s"),
    (dict(prior_spread=0.5), "prior_spread"), (dict(initial_bps=0.0), "initial_bps"),
    (dict(max_samples=1), "max_samples"), (dict(noise_var=0.0), "noise_var"),
])
def test_bad_belief_settings_name_the_value(kwargs, word):
    with pytest.raises(EstimatorError, match=word):
        RateBelief(**kwargs)


@pytest.mark.parametrize("q", [0.0, 1.0, 1.5, -0.1, True, "0.5"])
def test_bad_quantiles_are_named(q):
    with pytest.raises(ValueError, match="quantile"):
        RateBelief(1e6).quantile_bps(0.0, q)


# --- the policy --------------------------------------------------------------------------------

def _setup(trace: BandwidthTrace):
    sc = three_tiers(0)
    setup = prepare(sc, trace)
    local = setup.simulator.costs(baseline(sc, "device")).latency_at(1.0)
    return sc, setup, local


def test_robust_is_registered_and_checks_its_settings():
    assert "robust" in POLICIES and parse_policies("robust,oracle") == ["robust", "oracle"]
    sc, setup, _ = _setup(BandwidthTrace((0.0,), (40e6,)))
    p = build_policy("robust", setup.setting)
    assert isinstance(p, RobustPolicy) and p.observes
    with pytest.raises(PolicyError, match="energy weight -1"):
        RobustPolicy(setup.setting.table, sc, 40e6, energy_weight=-1)
    with pytest.raises(ValueError, match="quantile 2"):
        RobustPolicy(setup.setting.table, sc, 40e6, quantile=2)


def test_a_cold_start_sends_nothing_bare():
    """No history: whatever plan is chosen, a remote one is raced or backed up by the device."""
    sc, setup, local = _setup(BandwidthTrace((0.0,), (40e6,)))
    p = build_policy("robust", setup.setting)
    plan = p.next_plan(0.0)
    if setup.simulator.costs(plan).device_bits > 0:
        assert p.hedge and p.choice[0] in ("race", "backup")
    # a quantile of the score, not its mean, is as available
    q = RobustPolicy(setup.setting.table, sc, 40e6, quantile=0.9)
    q.next_plan(0.0)
    assert q.choice[1] >= p.choice[1] - 1e-12  # the 0.9 quantile is above the mean here


def test_cold_start_into_an_outage_costs_about_the_device_alone():
    """40 Mbit/s for 1 s, then 20 s of nothing: the requests sent as the link falls are
    answered by the device (about local_s), where the adaptive policy's wait the outage out."""
    trace = BandwidthTrace((0.0, 1.0, 21.0), (40e6, 0.0, 40e6))
    sc, setup, local = _setup(trace)
    assert setup.setting.table.best(40e6) is not setup.setting.table.best(1e3)  # offloads
    times = np.arange(0.2, 40.0, 0.5)
    robust = setup.simulator.run(build_policy("robust", setup.setting), times, 40.0)
    adaptive = setup.simulator.run(build_policy("adaptive", setup.setting), times, 40.0)
    oracle = setup.simulator.run(build_policy("oracle", setup.setting), times, 40.0)
    assert robust.latency_s.max() < 3 * local < adaptive.latency_s.max()
    assert robust.latency_s.mean() <= 1.10 * oracle.latency_s.mean()
    assert robust.hedged > 0


def test_the_link_back_after_an_outage_takes_work_off_the_device():
    """Once the probes see the link back, requests leave the device within a few seconds."""
    trace = BandwidthTrace((0.0, 10.0, 30.0), (40e6, 0.0, 40e6))
    sc, setup, local = _setup(trace)
    times = np.arange(0.2, 50.0, 0.5)
    robust = setup.simulator.run(build_policy("robust", setup.setting), times, 50.0)
    remote = [i for i, c in enumerate(robust.cuts) if "edge" in c or "cloud" in c]
    back = (times > 33.0)
    assert np.isin(robust.plan_index[back], remote).all()
    assert robust.latency_s[back].max() < local


def test_work_queued_on_the_device_through_an_outage_goes_remote_once_the_link_is_back():
    """Requests arrive faster than the device serves them during a 20 s outage, so a queue
    builds on the device; once probes see the link back, the requests still queued are
    decided again at the head of the queue and sent remote, which beats serving them all on
    the device (the same policy with re-deciding off)."""
    trace = BandwidthTrace((0.0, 10.0, 30.0), (40e6, 0.0, 40e6))
    sc, setup, local = _setup(trace)
    times = np.concatenate([np.arange(0.2, 10.0, 0.5), np.arange(10.0, 30.0, 0.6 * local),
                            np.arange(30.0, 50.0, 0.5)])
    runs = {}
    for replans in (True, False):
        p = build_policy("robust", setup.setting)
        p.replans = replans
        runs[replans] = setup.simulator.run(p, times, 50.0)
    on, off = runs[True], runs[False]
    remote = [i for i, c in enumerate(on.cuts) if "edge" in c or "cloud" in c]
    late = (times > 25.0) & (times < 30.0)  # arrived in the outage, still queued at its end
    assert late.sum() >= 5
    assert np.isin(on.plan_index[late], remote).all()  # every one of them went remote
    assert on.replanned >= late.sum()
    assert off.replanned == 0 and not np.isin(off.plan_index[late], remote).any()
    assert on.latency_s.mean() < 0.9 * off.latency_s.mean()


def test_a_policy_that_does_not_opt_in_is_never_asked_to_replan():
    trace = BandwidthTrace((0.0, 10.0, 30.0), (40e6, 0.0, 40e6))
    sc, setup, local = _setup(trace)
    p = Listener(baseline(sc, "device"))
    p.replan_queued = lambda now, plan: pytest.fail("asked to replan")
    r = setup.simulator.run(p, np.arange(0.0, 40.0, 0.5 * local), 40.0)
    assert r.replanned == 0


def test_on_a_flapping_link_robust_is_not_worse_than_static():
    sc, _, _ = _setup(BandwidthTrace((0.0,), (40e6,)))
    trace = shapes.flapping(8e6, seed=1, crossings=20, duration_s=140.0)
    setup = prepare(sc, trace)
    from tiercut.sim.simulator import Arrivals
    means = {}
    for name in ("static", "robust"):
        means[name] = np.mean([setup.simulator.run(build_policy(name, setup.setting),
                                                   Arrivals("poisson", 2.0), 140.0, s)
                               .latency_s.mean() for s in range(3)])
    assert means["robust"] <= 1.02 * means["static"]


# --- the simulator: a probe stuck on the link is told of ---------------------------------------

class Listener(Policy):
    """Keeps everything on the device, probes the link every second and records what it hears."""
    observes = True
    probe_every_s = 1.0

    def __init__(self, plan):
        self.plan, self.heard, self.bandwidth = plan, [], RateBelief(1e6)

    def observe(self, obs):
        self.heard.append(obs)
        self.bandwidth.observe(obs)

    def next_plan(self, now, backlog_s=0.0):
        return self.plan


def test_a_probe_stuck_in_an_outage_is_told_again_while_it_lasts():
    trace = BandwidthTrace((0.0, 5.0, 30.0), (40e6, 0.0, 40e6))
    sc, setup, _ = _setup(trace)
    p = Listener(baseline(sc, "device"))
    setup.simulator.run(p, np.arange(0.0, 40.0, 0.5), 40.0)
    under_way = [o for o in p.heard if not o.done and 6.0 < o.now < 30.0]
    assert len(under_way) >= 3
    assert all(b.seconds > a.seconds for a, b in zip(under_way, under_way[1:]))


# --- the shapes ---------------------------------------------------------------------------------

def test_shapes_are_deterministic_and_have_their_shape():
    a, b = shapes.cold_start_outage(3), shapes.cold_start_outage(3)
    assert a == b and a != shapes.cold_start_outage(4)
    assert a.rate_at(1.0) > 5e6 and a.rate_at(10.0) == shapes.FLOOR_BPS and a.rate_at(40.0) > 5e6
    fade = shapes.linear_fade(0, jitter=0.0)
    rates = [fade.rate_at(t) for t in np.arange(0.0, 60.0, 0.5)]
    low = rates.index(min(rates))
    assert all(x >= y for x, y in zip(rates[:low], rates[1:low + 1]))  # slides down to the floor
    flap = shapes.flapping(5e6, seed=0, crossings=20, duration_s=140.0, jitter=0.0)
    sides = [r > 5e6 for r in flap.rates_bps]
    crossings = sum(x != y for x, y in zip(sides, sides[1:]))
    assert 8 <= crossings <= 40
    assert len(shapes.shapes(5e6, seeds=(0, 1))) == 6


@pytest.mark.parametrize("call, word", [
    (lambda: shapes.cold_start_outage(duration_s=-1.0), "duration_s"),
    (lambda: shapes.cold_start_outage(step_s=200.0), "step_s"),
    (lambda: shapes.linear_fade(fade_s=0.0), "fade_s"),
    (lambda: shapes.flapping(0.0), "center_bps"),
    (lambda: shapes.flapping(1e6, crossings=0), "crossings"),
    (lambda: shapes.flapping(1e6, spread=1.0), "spread"),
])
def test_bad_shape_settings_name_the_value(call, word):
    with pytest.raises(BandwidthTraceError, match=word):
        call()
