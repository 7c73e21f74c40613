"""Unequal nodes streaming one model for real: each plan of the cluster planner runs on tier
servers in their own processes behind a shaping proxy per pair, many frames in flight, every
answer equal to the whole model's."""
import pytest

from tiercut.planner import Link
from tiercut.testbed.cluster import spread, stage_assignment, run_cluster_testbed

pytestmark = pytest.mark.slow


def test_three_plans_stream_through_unequal_nodes():
    cluster, runs = run_cluster_testbed("squeezenet1_1", caps=(0.6, 0.2), frames=6,
                                        link=Link(200e6, 0.001), log=lambda _: None)
    assert [r.label for r in runs] == ["planned", "chain", "single"]
    assert cluster.source == "source" and set(cluster.names) == {"source", "n1", "n2"}
    for r in runs:  # run_cluster_testbed raised if any answer differed from the whole model's
        assert r.frames == 6 and r.measured_fps > 0 and r.predicted_fps > 0
        nodes = {n for s in r.plan.stages for n in s.nodes}
        assert "source" not in nodes  # frames arrive there; it computes nothing
        assert set(r.utilisation) <= nodes and all(u > 0 for u in r.utilisation.values())
    # the planner's space holds the chain's and the single node's plans
    planned, chain, single = runs
    assert planned.predicted_fps >= chain.predicted_fps - 1e-9
    assert planned.predicted_fps >= single.predicted_fps - 1e-9


def test_nodes_spread_over_cpus_by_cap_and_stages_cover_the_graph():
    assert spread([0.5, 0.1, 0.3, 0.2]) == [0, 0, 1, 1]  # 0.6 and 0.5 of a CPU
    with pytest.raises(ValueError, match="at least 2 nodes"):
        run_cluster_testbed("squeezenet1_1", caps=(0.5,))


def test_stage_assignment_follows_the_cuts():
    class P:
        cuts = (0, 2, 5)
    assert stage_assignment(P(), list("abcde")) == {"a": 1, "b": 1, "c": 2, "d": 2, "e": 2}


def test_the_shared_ceiling_is_measured_through_real_servers_and_refuses_nonsense():
    from tiercut.runtime.launch import spawn
    from tiercut.testbed.medium import measure_medium

    with pytest.raises(ValueError, match="frame size"):
        measure_medium([], 1000)
    with spawn(["digits_cnn"]) as server:
        rate = measure_medium([server.endpoint], 100_000, seconds=0.5)
    assert rate > 1e6  # loopback carries far more than a megabit a second
