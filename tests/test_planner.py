"""The planner on small scenarios: exact against brute force, constraints honoured, bad input."""
import math
import random

import pytest

from tiercut.planner import (Constraints, Host, InfeasibleError, Link, Scenario, ScenarioError,
                             baseline, parse_link, plan)
from tiercut.planner.build import build, routes
from tiercut.planner import brute
from tiercut.measure.profile import NodeProfile, Profile


def dag_profile(host: str, speed: float, seed: int = 0, n: int = 7, model: str = "dag") -> Profile:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        inputs = tuple(sorted({f"n{rng.randrange(i)}" for _ in range(rng.randint(1, 2))})) if i else ()
        nodes.append(NodeProfile(f"n{i}", inputs, latency_s=(0.001 + rng.random() * 0.01) / speed,
                                 output_bytes=rng.randint(1_000, 400_000), param_bytes=1000 * i))
    return Profile(model=model, host={"name": host}, input_bytes=150_000,
                   outputs=(nodes[-1].name,), nodes=tuple(nodes))


def three_tiers(seed: int = 0, n: int = 7, two_edges: bool = False) -> Scenario:
    hosts = [Host("phone", "device", dag_profile("phone", 0.1, seed, n)),
             Host("e1", "edge", dag_profile("e1", 1.0, seed, n)),
             Host("c1", "cloud", dag_profile("c1", 5.0, seed, n))]
    if two_edges:
        hosts.append(Host("e2", "edge", dag_profile("e2", 2.0, seed, n), load=1.5))
    links = {("device", "edge"): parse_link("20mbit,10ms"), ("edge", "cloud"): parse_link("200mbit,15ms"),
             ("device", "cloud"): parse_link("8mbit,40ms")}
    return Scenario(("device", "edge", "cloud"), tuple(hosts), links)


def brute_best(scenario: Scenario, constraints=Constraints()) -> float:
    return min(brute.solve(build(scenario, r, "latency", constraints)[0])[0]
               for r in routes(scenario, constraints))


@pytest.mark.parametrize("seed", range(8))
def test_three_tier_optimum_equals_brute_force(seed):
    sc = three_tiers(seed, two_edges=seed % 2 == 0)
    p = plan(sc)
    assert math.isclose(p.value, brute_best(sc), rel_tol=1e-9)
    assert p.total_s <= baseline(sc, "device").total_s * (1 + 1e-12)
    assert p.total_s <= baseline(sc, "cloud").total_s * (1 + 1e-12)


def test_constraints_are_honoured():
    sc = three_tiers(3)
    c = Constraints(pin={"n0": "edge"}, forbid=(("n6", "cloud"),), never_hosts=("c1",))
    p = plan(sc, constraints=c)
    assert p.assignment["n0"] == "edge" and p.assignment["n6"] != "cloud"
    assert p.hosts["cloud"] is None
    assert math.isclose(p.value, brute_best(sc, c), rel_tol=1e-9)
    skip = plan(sc, constraints=Constraints(skip_tiers=("edge",)))
    assert "edge" not in skip.assignment.values() and skip.hosts["edge"] is None


def test_conflicting_constraints_are_named():
    sc = three_tiers(1)
    c = Constraints(pin={"n3": "edge"}, skip_tiers=("edge",), forbid=(("n5", "cloud"),))
    with pytest.raises(InfeasibleError, match=r"cannot all hold: pin n3=edge, skip_tiers edge$"):
        plan(sc, constraints=c)


def test_unknown_names_list_the_valid_ones():
    sc = three_tiers(0)
    with pytest.raises(ScenarioError, match=r"unknown node 'zz'.*'n0'"):
        plan(sc, constraints=Constraints(pin={"zz": "edge"}))
    with pytest.raises(ScenarioError, match=r"unknown tier 'fog'; tiers are \['device', 'edge', 'cloud'\]"):
        plan(sc, constraints=Constraints(pin={"n1": "fog"}))
    with pytest.raises(ScenarioError, match=r"unknown host 'e9'; hosts are \['phone', 'e1', 'c1'\]"):
        plan(sc, constraints=Constraints(only_hosts=("e9",)))


@pytest.mark.parametrize("rate", ["0mbit", "-5mbit"])
def test_zero_or_negative_bandwidth(rate):
    with pytest.raises(ScenarioError, match=r"bandwidth must be a finite number > 0"):
        parse_link(f"{rate},10ms")
    with pytest.raises(ScenarioError, match=r"not a rate like 10mbit"):
        parse_link("fast,10ms")


def test_missing_link_names_the_hop():
    sc = three_tiers(0)
    links = {k: v for k, v in sc.links.items() if k != ("edge", "cloud")}
    sc = Scenario(sc.tiers, sc.hosts, links)
    with pytest.raises(ScenarioError, match=r"no link for the hop e1 \(edge\) -> c1 \(cloud\)"):
        plan(sc)


def test_profiles_of_different_graphs_are_refused():
    a = dag_profile("phone", 0.1, seed=1)
    b = dag_profile("e1", 1.0, seed=2, n=9, model="other")
    with pytest.raises(ScenarioError, match=r"profiles of different graphs: host 'e1' has 'other'"):
        Scenario(("device", "edge"), (Host("phone", "device", a), Host("e1", "edge", b)),
                 {("device", "edge"): Link(1e7)})


def test_no_return_drops_the_reply():
    sc = three_tiers(4)
    with_return = plan(sc)
    without = plan(Scenario(sc.tiers, sc.hosts, sc.links, return_outputs=False))
    assert without.total_s <= with_return.total_s and without.return_s == 0.0


def test_energy_objective_counts_only_the_device():
    sc = three_tiers(5)
    hosts = (Host("phone", "device", sc.hosts[0].profile, compute_power_w=3.0, radio_power_w=1.2),
             *sc.hosts[1:])
    sc = Scenario(sc.tiers, hosts, sc.links)
    p = plan(sc, objective="energy")
    best = min(brute.solve(build(sc, r, "energy")[0])[0] for r in routes(sc))
    assert math.isclose(p.value, best, rel_tol=1e-9)


def test_codecs_shrink_what_crosses_and_the_fastest_is_chosen():
    from tiercut.planner.scenario import Codec
    sc = three_tiers(6)
    plain = plan(sc)
    q8 = Codec("q8", ratio=0.25, encode_s_per_byte=1e-9, decode_s_per_byte=1e-9)
    slow = Codec("slow", ratio=0.01, encode_s_per_byte=1e-3, decode_s_per_byte=0.0)
    codecs = {(a, b): (q8, slow) for a, b in sc.links}
    coded = plan(Scenario(sc.tiers, sc.hosts, sc.links, codecs=codecs))
    assert coded.total_s <= plain.total_s
    assert all(h.codec == "q8" for h in coded.hops)
    assert math.isclose(coded.value, brute_best(Scenario(sc.tiers, sc.hosts, sc.links, codecs=codecs)),
                        rel_tol=1e-9)


def test_input_bytes_override():
    sc = three_tiers(7)
    small = Scenario(sc.tiers, sc.hosts, sc.links, input_bytes=10)
    assert baseline(small, "cloud").total_s < baseline(sc, "cloud").total_s
    assert math.isclose(plan(small).value, brute_best(small), rel_tol=1e-9)
    with pytest.raises(ScenarioError, match=r"input_bytes must be an integer >= 0, got -1"):
        Scenario(sc.tiers, sc.hosts, sc.links, input_bytes=-1)


def brute_bottleneck(scenario: Scenario, constraints=Constraints()) -> float:
    return min(brute.solve_bottleneck(*build(scenario, r, "throughput", constraints))[0]
               for r in routes(scenario, constraints))


@pytest.mark.parametrize("seed", range(6))
def test_throughput_optimum_equals_brute_force(seed):
    sc = three_tiers(seed, two_edges=seed % 2 == 0)
    c = Constraints(use_tiers=("edge",)) if seed % 3 == 2 else Constraints()
    p = plan(sc, "throughput", c)
    assert p.method == "milp"
    assert math.isclose(p.value, brute_bottleneck(sc, c), rel_tol=1e-9)
    # the slowest stage is a tier's compute or a hop's transfer of this very plan
    stages = [*p.tier_seconds.values(),
              *(h.seconds - sc.link(sc.host(h.src_host), sc.host(h.dst_host)).latency_s
                for h in p.hops)]
    assert p.value >= max(stages) * (1 - 1e-9)
    for tier in ("device", "cloud"):  # never a slower stream than everything on one tier
        one = plan(sc, "throughput", Constraints(pin={n: tier for n in p.assignment},
                                                 only_hosts=("phone", "c1")))
        assert p.value <= one.value * (1 + 1e-12)
    assert plan(sc, "throughput", c, method="brute").value == pytest.approx(p.value, rel=1e-9)
    with pytest.raises(ScenarioError, match=r"throughput objective is solved by 'milp' or 'brute'"):
        plan(sc, "throughput", c, method="mincut")
