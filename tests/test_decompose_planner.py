"""The division planner: exact against brute force, the heuristic never better than exact, and
the device/edge/cloud plan that divides a run only where that predicts a gain."""
import math
import random

import pytest

from tiercut import trace, zoo
from tiercut.decompose import DecomposeError, SpatialRun
from tiercut.decompose.planner import (Worker, best_division, brute_division, candidate_runs,
                                       part_seconds, plan_with_division, row_costs)
from tiercut.measure.profile import Profile
from tiercut.planner import Host, Scenario, parse_link
from tiercut.planner.scenario import ScenarioError


@pytest.fixture(scope="module")
def vgg():
    e = zoo.entry("vgg16")
    return trace(e.build(), e.example_inputs(), name="vgg16")


def workers(run, rng, n):
    out = []
    for i in range(n):
        speed = rng.choice([0.3, 1.0, 1.0, 2.5])
        out.append(Worker(f"h{i}", {v: rng.uniform(1e-3, 1e-2) / speed for v in run.names},
                          math.inf if i == 0 else rng.choice([2e7, 1e8, 1e9]),
                          0.0 if i == 0 else rng.choice([1e-4, 1e-3, 5e-3])))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_exact_division_equals_brute_force(vgg, seed):
    rng = random.Random(seed)
    first, last = rng.choice([("features_17", "features_23"), ("features_24", "features_29"),
                              ("features_19", "features_22")])
    run = SpatialRun(vgg, first, last)
    costs = row_costs(run)
    ws = workers(run, rng, rng.choice([2, 3, 4]))
    for k in (1, 2, 3):
        exact, brute = best_division(costs, ws, k), brute_division(costs, ws, k)
        assert exact.total_s == pytest.approx(brute.total_s, rel=1e-12)
        assert len(exact.workers) <= k and len(set(exact.workers)) == len(exact.workers)
        heuristic = best_division(costs, ws, k, method="heuristic")
        assert heuristic.total_s >= exact.total_s - 1e-15


def test_a_part_costs_what_its_rows_say(vgg):
    run = SpatialRun(vgg, "features_0", "features_4")
    costs = row_costs(run)
    w = Worker("w", {v: 0.01 * (i + 1) for i, v in enumerate(run.names)}, 1e8, 1e-3)
    m = part_seconds(costs, w)
    rng = random.Random(1)
    for _ in range(20):
        a = rng.randrange(0, costs.height)
        b = rng.randrange(a + 1, costs.height + 1)
        part = run.part(((a, b), (0, run.out_shape[3])))
        compute = sum(w.seconds[v] * (part.rects[v][0][1] - part.rects[v][0][0])
                      / run.shape[v][2] for v in run.names)
        src = part.halo_rows * 3 * 224 * 4
        out = (b - a) * 64 * 112 * 4
        assert m[a, b] == pytest.approx(compute + 2e-3 + 8 * (src + out) / 1e8)
    assert math.isinf(m[5, 5]) and math.isinf(m[6, 5])


def test_a_measured_efficiency_curve_scales_a_part_by_its_share_of_the_rows(vgg):
    run = SpatialRun(vgg, "features_17", "features_22")
    costs = row_costs(run)
    plain = Worker("w", {v: 0.01 for v in run.names})
    curved = Worker("w", plain.seconds, efficiency=((1.0, 1.0), (0.5, 0.8)))
    a, b = part_seconds(costs, plain), part_seconds(costs, curved)
    h = costs.height
    assert b[0, h] == pytest.approx(a[0, h])  # the whole run: as profiled
    assert b[0, h // 2] == pytest.approx(0.8 * a[0, h // 2])  # half the rows: as measured
    assert b[0, 3 * h // 4] == pytest.approx(0.9 * a[0, 3 * h // 4])  # interpolated between


def test_equal_hosts_divide_evenly_and_the_heuristic_finds_it(vgg):
    run = SpatialRun(vgg, "features_17", "features_22")
    costs = row_costs(run)
    same = [Worker(f"h{i}", {v: 0.01 for v in run.names}, math.inf if i == 0 else 1e10, 0.0)
            for i in range(3)]
    exact = best_division(costs, same)
    assert len(exact.workers) == 3 and exact.total_s < 0.5 * sum(same[0].seconds.values())
    assert best_division(costs, same, method="heuristic").total_s == pytest.approx(exact.total_s)


def test_bad_divisions_are_refused(vgg):
    costs = row_costs(SpatialRun(vgg, "features_0", "features_1"))
    with pytest.raises(DecomposeError, match="at least one worker"):
        best_division(costs, [])
    with pytest.raises(DecomposeError, match="accepted exact, heuristic"):
        best_division(costs, [Worker("a", {})], method="greedy")


# ---- inside the device/edge plan ------------------------------------------------------------
def scenario(graph, edges, lan):
    lat = {n.name: max(n.flops, 1) / 2e10 for n in graph.compute_nodes}

    def prof(speed, name):
        return Profile.from_graph(graph, {k: v / speed for k, v in lat.items()},
                                  host={"name": name})
    hosts = (Host("phone", "device", prof(0.1, "phone")),
             *(Host(f"e{i}", "edge", prof(1.0, f"e{i}")) for i in range(edges)))
    return Scenario(("device", "edge"), hosts, {("device", "edge"): parse_link("100mbit,2ms"),
                                                ("edge", "edge"): parse_link(lan)})


def test_candidate_runs_start_and_end_where_one_tensor_flows():
    e = zoo.entry("resnet18")
    graph = trace(e.build(), e.example_inputs(), name="resnet18")
    runs = candidate_runs(graph)
    assert runs and all(len(r.names) >= 2 for r in runs)
    assert any(r.last == "layer1_0_relu_1" for r in runs)  # a residual block's output
    assert not any(r.last == "layer1_0_conv2" for r in runs)  # inside the block


def test_the_plan_divides_a_run_only_where_it_predicts_a_gain(vgg):
    fast = plan_with_division(scenario(vgg, 3, "10gbit,0.1ms"), vgg)
    assert fast.run is not None and len(fast.division.workers) >= 2
    assert fast.plan.total_s < fast.undivided.total_s and fast.saving_s > 0
    assert {fast.plan.assignment[v] for v in SpatialRun(vgg, *fast.run).names} == {"edge"}
    every = plan_with_division(scenario(vgg, 3, "10gbit,0.1ms"), vgg, tries=None)
    assert every.plan.total_s <= fast.plan.total_s + 1e-12  # solving for every run: the optimum
    slow = plan_with_division(scenario(vgg, 3, "1mbit,50ms"), vgg)
    assert slow.run is None and slow.plan is slow.undivided
    alone = plan_with_division(scenario(vgg, 1, "10gbit,0.1ms"), vgg)
    assert alone.run is None
    with pytest.raises(ScenarioError, match="unknown tier 'fog'"):
        plan_with_division(scenario(vgg, 2, "1gbit"), vgg, tier="fog")


def test_cli_plan_divide_tiles_a_run_across_the_edge_hosts():
    import json

    from typer.testing import CliRunner

    from tiercut.cli import app

    base = ["plan", "--model", "vgg16", "--tier", "device=x0.05", "--tier", "edge=x1,x1,x1",
            "--link", "device-edge=100mbit,2ms"]
    run = CliRunner().invoke(app, [*base, "--link", "edge-edge=10gbit,0.1ms", "--divide",
                                   "edge", "--json"])
    assert run.exit_code == 0, run.output
    data = json.loads(run.output)
    division = data["division"]
    assert division and len(division["hosts"]) >= 2
    assert data["predicted"]["total_s"] < division["undivided_total_s"]
    text = CliRunner().invoke(app, [*base, "--link", "edge-edge=1mbit,50ms", "--divide", "edge"],
                              env={"COLUMNS": "150"})
    assert text.exit_code == 0 and "no run divided" in text.output
    bad = CliRunner().invoke(app, ["plan", "--tier", "device=x1", "--divide", "edge"])
    assert bad.exit_code != 0
