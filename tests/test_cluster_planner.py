"""The cluster planner on small synthetic clusters: exact against brute force, the swarm
never better than exact and repeatable, the chain baseline inside the full search, the
replica and medium arithmetic, and the caps."""
import itertools
import json
import math
import random

import pytest

from tiercut.cluster import (Cluster, ClusterError, ClusterNode, Medium, marginal_nodes,
                             plan_cluster)
from tiercut.cluster.pipeline import INF, cost_model, evaluate
from tiercut.measure.profile import NodeProfile, Profile
from tiercut.planner.scenario import Link


def profile(n: int = 6, seed: int = 0, dag: bool = False, model: str = "toy",
            params: int = 1000) -> Profile:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        if dag and i > 1:
            inputs = tuple(sorted({f"n{i - 1}", f"n{rng.randrange(i - 1)}"}))
        else:
            inputs = (f"n{i - 1}",) if i else ()
        nodes.append(NodeProfile(f"n{i}", inputs, latency_s=0.001 + rng.random() * 0.01,
                                 output_bytes=rng.randint(1_000, 300_000),
                                 param_bytes=params * (i + 1)))
    return Profile(model=model, host={"name": "ref"}, input_bytes=150_000,
                   outputs=(nodes[-1].name,), nodes=tuple(nodes))


def cluster(speeds, seed: int = 0, n: int = 6, dag: bool = False, medium=None,
            memory=None, params: int = 1000) -> Cluster:
    rng = random.Random(seed + 100)
    names = [f"d{i}" for i in range(len(speeds))]
    links = {(a, b): Link(rng.choice([10e6, 50e6, 200e6, 1e9]), rng.choice([0, 0.001, 0.01]))
             for i, a in enumerate(names) for b in names[i + 1:]}
    nodes = tuple(ClusterNode(name, speed=s, memory_bytes=None if memory is None else memory[i])
                  for i, (name, s) in enumerate(zip(names, speeds)))
    return Cluster(nodes, links, medium=medium, reference=profile(n, seed, dag, params=params))


def placements(nodes):
    """Every ordered sequence of disjoint non-empty groups."""
    for k in range(1, len(nodes) + 1):
        for used in itertools.combinations(nodes, k):
            for order in itertools.permutations(used):
                for stages in range(1, k + 1):
                    for bounds in itertools.combinations(range(1, k), stages - 1):
                        edges = [0, *bounds, k]
                        groups = [tuple(sorted(order[a:b])) for a, b in zip(edges, edges[1:])]
                        yield tuple(groups)


def brute(c: Cluster, cap=None, cuts: str = "single") -> float:
    model = cost_model(c, cuts=cuts)
    best = INF
    for groups in set(placements(range(len(c.nodes)))):
        k = len(groups)
        for inner in itertools.combinations(range(1, model.m), k - 1):
            ev = evaluate(model, groups, (0, *inner, model.m))
            if cap is not None and ev.latency > cap:
                continue
            best = min(best, ev.period)
    return best


CASES = [dict(speeds=[1, 2, 0.5]), dict(speeds=[1, 3, 0.7], dag=True, seed=1),
         dict(speeds=[1, 1, 4], seed=2, medium=Medium(60e6)),
         dict(speeds=[2, 1, 1], seed=3, dag=True, medium=Medium(40e6, ("d0", "d1"))),
         dict(speeds=[1, 2, 5], seed=4, memory=[1_000_000, 1_300_000, 900_000], params=60_000)]


@pytest.mark.parametrize("case", CASES)
def test_exact_equals_brute_force(case):
    c = cluster(**case)
    plan = plan_cluster(c, method="exact")
    assert plan.period_s == pytest.approx(brute(c), rel=1e-9)
    for method in ("swarm", "chain"):
        assert plan_cluster(c, method=method).period_s >= plan.period_s * (1 - 1e-9)


@pytest.mark.parametrize("case", CASES[1::2])
def test_exact_equals_brute_force_over_every_cut_of_a_dag(case):
    c = cluster(**{**case, "dag": True})
    plan = plan_cluster(c, method="exact", cuts="all")
    assert plan.period_s == pytest.approx(brute(c, cuts="all"), rel=1e-9)
    assert plan.period_s <= plan_cluster(c, method="exact").period_s * (1 + 1e-12)


@pytest.mark.parametrize("case", CASES[:4])
def test_exact_equals_brute_force_under_a_latency_cap(case):
    c = cluster(**case)
    free = plan_cluster(c, method="exact")
    cap = free.latency_s * 0.8
    plan = plan_cluster(c, method="exact", latency_cap_s=cap)
    assert plan.latency_s <= cap * (1 + 1e-9)
    assert plan.period_s == pytest.approx(brute(c, cap), rel=1e-9)
    for method in ("swarm", "chain"):
        try:
            other = plan_cluster(c, method=method, latency_cap_s=cap)
        except ClusterError:
            continue
        assert other.latency_s <= cap * (1 + 1e-9)


def test_a_latency_cap_nothing_meets_is_refused_with_the_quickest_latency():
    c = cluster([1, 2, 0.5])
    with pytest.raises(ClusterError, match=r"latency cap 0\.01 ms; the quickest frame"):
        plan_cluster(c, latency_cap_s=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_swarm_never_beats_exact_nor_loses_to_chain_and_repeats(seed):
    rng = random.Random(seed)
    speeds = [rng.choice([0.25, 0.5, 1, 2, 4]) for _ in range(rng.randint(3, 5))]
    c = cluster(speeds, seed=seed, n=8, dag=seed % 2 == 1)
    best = plan_cluster(c, method="exact")
    a = plan_cluster(c, method="swarm", seed=seed)
    b = plan_cluster(c, method="swarm", seed=seed)
    base = plan_cluster(c, method="chain")
    assert a.to_dict() == b.to_dict()
    assert best.period_s <= a.period_s * (1 + 1e-9) <= base.period_s * (1 + 1e-9)
    assert best.period_s <= base.period_s * (1 + 1e-9)


def test_the_chain_plan_is_a_placement_of_the_full_search():
    c = cluster([0.5, 4, 1, 2], seed=7, n=8)
    base = plan_cluster(c, method="chain")
    model = cost_model(c)
    groups = [tuple(c.names.index(n) for n in g) for g in base.groups]
    cuts = [model.positions.index(p) for p in base.cuts]
    again = evaluate(model, groups, cuts)
    assert again.period == pytest.approx(base.period_s) and again.fits
    assert all(len(g) == 1 for g in base.groups)
    order = [c.names.index(g[0]) for g in base.groups]
    assert order == sorted(order)  # in the cluster's order


def test_replicas_share_frames_by_speed():
    ref = profile(4)
    c = Cluster((ClusterNode("a", speed=1), ClusterNode("b", speed=3)),
                default_link=Link(1e15, 0.0), reference=ref)
    plan = plan_cluster(c, method="exact")
    assert len(plan.stages) == 1 and plan.stages[0].mode == "replicas"
    assert plan.stages[0].shares == pytest.approx((0.25, 0.75))
    assert plan.period_s == pytest.approx(ref.total_latency_s / 4, rel=1e-6)
    assert plan.throughput_fps == pytest.approx(1 / (1 / ref.total_latency_s
                                                     + 3 / ref.total_latency_s) ** -1, rel=1e-6)
    assert plan.latency_s == pytest.approx(ref.total_latency_s, rel=1e-6)  # the slow replica


def test_a_shared_medium_adds_every_hop_on_it():
    ref = profile(4)
    slow = 1e6
    free = Cluster((ClusterNode("a", speed=0.01), ClusterNode("b", speed=100)),
                   default_link=Link(1e12, 0.0), reference=ref)
    shared = Cluster(free.nodes, default_link=Link(1e12, 0.0), medium=Medium(slow),
                     reference=ref)
    only_b = plan_cluster(shared, nodes=["b"])
    # everything on b: the input goes a -> b and the output b -> a, both on the air
    assert [s.nodes for s in only_b.stages] == [("b",)]
    out_bytes = ref.nodes[-1].output_bytes
    expect = 8 * (ref.input_bytes + out_bytes) / slow
    assert only_b.medium_s == pytest.approx(expect)
    assert only_b.period_s == pytest.approx(expect) and only_b.bottleneck == "medium"
    assert plan_cluster(free, nodes=["b"]).period_s < expect / 100
    # replicas on a and b: only b's share of the frames crosses the air
    both = Cluster(free.nodes, default_link=Link(1e12, 0.0), medium=Medium(slow),
                   reference=profile(4, seed=3))
    plan = plan_cluster(both)
    assert plan.period_s <= plan_cluster(both, nodes=["a"]).period_s
    assert plan.period_s <= plan_cluster(both, nodes=["b"]).period_s


def test_memory_caps_are_honoured_and_a_cap_nothing_fits_is_refused():
    c = cluster(**CASES[-1])
    plan = plan_cluster(c)
    assert plan.period_s > plan_cluster(cluster([1, 2, 5], seed=4, params=60_000)).period_s
    for s in plan.stages:
        assert all(s.memory_bytes <= c.node(n).memory_bytes for n in s.nodes)
    tight = cluster([1, 2, 5], seed=4, memory=[800_000, 850_000, 700_000], params=60_000)
    with pytest.raises(ClusterError, match=r"each must hold at least 0\.9 MB .* node 'd1'"):
        plan_cluster(tight)


def test_dag_cuts_count_every_crossing_tensor():
    p = profile(6, dag=True)
    model = cost_model(Cluster((ClusterNode("a"),), reference=p), cuts="all")
    sizes = {n.name: n.output_bytes for n in p.nodes}
    for c, tensors in zip(model.positions, model.tensors):
        assert model.crossing[model.positions.index(c)] == sum(
            sizes.get(t, p.input_bytes) for t in tensors)
    assert any(len(t) > 1 for t in model.tensors)  # the skip connections cross too
    single = cost_model(Cluster((ClusterNode("a"),), reference=p))
    assert all(len(t) == 1 for t in single.tensors)


def test_plan_dict_is_json_and_marginal_nodes_only_grow():
    c = cluster([1, 0.5, 3, 2], seed=5, n=8)
    plan = plan_cluster(c, method="swarm")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["throughput_fps"] == pytest.approx(plan.throughput_fps)
    assert sum(len(s["nodes"]) for s in data["stages"]) <= 4
    rows = marginal_nodes(c, method="exact")
    assert [r.k for r in rows] == [1, 2, 3, 4]
    assert rows[0].nodes == ("d2",)  # the fastest alone
    fps = [r.throughput_fps for r in rows]
    assert fps == sorted(fps)
    assert all(r.helps == (r.gain > 1.01) for r in rows[1:])


def test_utilisation_is_one_at_the_bottleneck_stage():
    c = Cluster((ClusterNode("a", speed=1), ClusterNode("b", speed=2)),
                default_link=Link(1e15, 0.0), reference=profile(6))
    plan = plan_cluster(c)
    assert max(s.utilisation for s in plan.stages) == pytest.approx(1.0)
    assert plan.bottleneck.startswith("stage")
    assert math.isclose(plan.throughput_fps, 1 / plan.period_s)


def test_a_node_behind_a_slow_link_does_not_help():
    c = Cluster((ClusterNode("a", speed=2), ClusterNode("b", speed=1)),
                {("a", "b"): Link(1e3, 0.5)}, reference=profile(5))
    rows = marginal_nodes(c, method="exact")
    assert rows[0].nodes == ("a",) and rows[1].helps is False
    assert rows[1].throughput_fps == pytest.approx(rows[0].throughput_fps)
    assert [s.nodes for s in rows[1].plan.stages] == [("a",)]


def test_the_swarm_bound_is_the_cut_dp_of_each_placement():
    from tiercut.cluster.cuts import Arrays, best_cuts, path

    c = cluster([1, 2, 0.5, 3], seed=8, n=8, dag=True)
    arrays = Arrays(cost_model(c))
    rng = random.Random(0)
    for _ in range(30):
        nodes = rng.sample(range(4), rng.randint(1, 4))
        cut = sorted(rng.sample(range(1, len(nodes)), rng.randint(0, len(nodes) - 1)))
        groups = tuple(tuple(sorted(nodes[a:b])) for a, b in zip([0, *cut], [*cut, len(nodes)]))
        value = best_cuts(arrays, *path(groups))[0]
        assert arrays.bound(groups) == pytest.approx(value, rel=1e-12)
        assert arrays.bound(groups) == pytest.approx(value, rel=1e-12)  # from the cache


def test_a_nodes_wire_cost_is_charged_on_what_its_stage_moves():
    bare = cluster([1.0, 2.0], seed=3)
    wired = Cluster(tuple(ClusterNode(n.name, speed=n.speed, wire_s_per_byte=1e-8)
                          for n in bare.nodes), bare.links, reference=bare.reference)
    a, b = cost_model(bare), cost_model(wired)
    m = a.m
    for i in range(2):
        for s in range(m):
            for e in range(s + 1, m + 1):
                moved = a.crossing[s] + a.crossing[e]
                assert b.seconds[i, s, e] == pytest.approx(a.seconds[i, s, e] + 1e-8 * moved)
    assert plan_cluster(wired, method="exact").throughput_fps <= \
        plan_cluster(bare, method="exact").throughput_fps
    with pytest.raises(ClusterError, match="wire seconds per byte must be >= 0"):
        ClusterNode("x", speed=1.0, wire_s_per_byte=-1.0)


def test_wire_ns_per_byte_is_read_from_a_cluster_file():
    from tiercut.cluster import cluster_from_dict

    data = {"nodes": [{"name": "a", "speed": 1, "wire_ns_per_byte": 20},
                      {"name": "b", "speed": 2}],
            "links": {"default": "100mbit,1ms"}}
    c = cluster_from_dict(data)
    assert c.node("a").wire_s_per_byte == pytest.approx(2e-8) and c.node("b").wire_s_per_byte == 0
    data["nodes"][1]["wire_ns_per_byte"] = "lots"
    with pytest.raises(ClusterError, match="wire_ns_per_byte must be a number"):
        cluster_from_dict(data)


def test_marginal_nodes_ranks_only_the_nodes_that_may_compute():
    c = cluster([1.0, 3.0, 2.0, 0.5], seed=1)
    ladder = marginal_nodes(c, method="exact", nodes=["d0", "d1", "d2"])
    assert [m.nodes for m in ladder] == [("d1",), ("d1", "d2"), ("d0", "d1", "d2")]
    with pytest.raises(ClusterError, match="unknown node 'nope'"):
        marginal_nodes(c, method="exact", nodes=["nope"])
