"""The simulator prices a divided plan as its parts running at once on their hosts: with
nothing queued it predicts the planner's figure, and requests that overlap queue on the peers."""
import math

import numpy as np
import pytest

from tiercut import trace, zoo
from tiercut.adapt.costs import FORK, Costs
from tiercut.adapt.policies.static import StaticPolicy
from tiercut.decompose.planner import plan_with_division
from tiercut.link.traces import BandwidthTrace
from tiercut.measure.profile import Profile
from tiercut.planner.scenario import Host, Scenario, parse_link
from tiercut.sim.divided import divided_cost, register_divided
from tiercut.sim.simulator import Simulator

UPLINK = 100e6


@pytest.fixture(scope="module")
def divided():
    e = zoo.entry("vgg16")
    graph = trace(e.build(), e.example_inputs(), name="vgg16")
    lat = {n.name: max(n.flops, 1) / 2e10 for n in graph.compute_nodes}

    def prof(speed, name):
        return Profile.from_graph(graph, {k: v / speed for k, v in lat.items()},
                                  host={"name": name})
    hosts = (Host("phone", "device", prof(0.1, "phone")),
             *(Host(f"e{i}", "edge", prof(1.0 - 0.2 * i, f"e{i}")) for i in range(3)))
    sc = Scenario(("device", "edge"), hosts, {("device", "edge"): parse_link("100mbit,2ms"),
                                              ("edge", "edge"): parse_link("1gbit,0.5ms")})
    d = plan_with_division(sc, graph)
    assert d.run is not None and len(d.division.workers) >= 2
    return sc, d


def test_divided_steps_add_up_to_the_divided_prediction(divided):
    sc, d = divided
    cost = divided_cost(sc, d)
    assert any(step[0] == FORK for step in cost.steps)
    assert len(cost.forks) == 1 and len(next(iter(cost.forks.values()))) == len(d.division.workers)
    assert cost.latency_at(UPLINK) == pytest.approx(d.plan.total_s, rel=1e-9)
    undivided = Costs(sc)(d.undivided)
    assert undivided.latency_at(UPLINK) == pytest.approx(d.undivided.total_s, rel=1e-9)
    assert cost.latency_at(UPLINK) < undivided.latency_at(UPLINK)


def run(sc, d, gap_s, n=40, divided=True):
    sim = Simulator(sc, BandwidthTrace.from_samples([0.0, 1e6], [UPLINK, UPLINK], name="flat"))
    if divided:
        register_divided(sim.costs, d)
    plan = d.plan if divided else d.undivided
    times = np.arange(n) * gap_s
    return sim.run(StaticPolicy(plan), times, float(times[-1]) + 1.0).latency_s


def test_a_lone_request_takes_the_prediction_and_overlapping_ones_queue_on_the_peers(divided):
    sc, d = divided
    alone = run(sc, d, gap_s=10.0)
    assert np.allclose(alone, d.plan.total_s, rtol=1e-9)
    # the same plan object unregistered is priced undivided: the registration is what counts
    assert np.allclose(run(sc, d, 10.0, divided=False), d.undivided.total_s, rtol=1e-9)
    part = max(d.division.part_s)
    busy = run(sc, d, gap_s=part / 2)  # twice as fast as the slowest part can serve them
    assert busy[-1] > busy[0] + 10 * part  # the queue grows request after request
    assert all(np.diff(busy) >= -1e-12)
    assert math.isfinite(busy[-1])
