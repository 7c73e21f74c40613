"""Decision tables answer like a fresh solve, across a dense bandwidth sweep."""
import math

import numpy as np
import pytest

from tiercut.planner import ScenarioError, plan
from tiercut.planner.table import build_table, plan_cost, with_device_bandwidth, with_load

from test_planner import three_tiers


@pytest.mark.parametrize("seed", [0, 3])
def test_lookup_equals_fresh_solve_on_a_dense_sweep(seed):
    sc = three_tiers(seed, n=8, two_edges=True)
    table = build_table(sc, low_bps=1e5, high_bps=1e10)
    assert list(table.breakpoints) == sorted(table.breakpoints)
    for bps in np.geomspace(1e5, 1e10, 150):
        s = with_device_bandwidth(sc, bps)
        fresh = plan(s).value
        assert math.isclose(plan_cost(s, table.best(bps)), fresh, rel_tol=1e-9), bps


@pytest.mark.parametrize("seed", [2, 5])
def test_bandwidth_and_load_lookups_equal_fresh_solves(seed):
    sc = three_tiers(seed, n=8, two_edges=seed == 5)
    table = build_table(sc, low_bps=1e5, high_bps=1e10, load_tier="edge", load_range=(0.5, 8.0))
    for load in np.linspace(0.5, 8.0, 12):
        for bps in np.geomspace(1e5, 1e10, 40):
            s = with_load(with_device_bandwidth(sc, bps), "edge", load)
            fresh = plan(s).value
            assert math.isclose(plan_cost(s, table.best(bps, load)), fresh, rel_tol=1e-9), \
                (bps, load)


def test_bad_ranges_and_bandwidths():
    sc = three_tiers(0)
    with pytest.raises(ScenarioError, match=r"0 < low < high"):
        build_table(sc, low_bps=1e9, high_bps=1e6)
    table = build_table(sc)
    with pytest.raises(ScenarioError, match=r"bandwidth must be > 0"):
        table.best(0.0)
    with pytest.raises(ScenarioError, match=r"load range must satisfy 0 < low <= high"):
        build_table(sc, load_tier="edge", load_range=(2.0, 1.0))
    with pytest.raises(ScenarioError, match=r"unknown tier 'fog'"):
        build_table(sc, load_tier="fog", load_range=(1.0, 2.0))
    loaded = build_table(sc, load_tier="edge", load_range=(1.0, 2.0))
    with pytest.raises(ScenarioError, match=r"load must be > 0"):
        loaded.best(1e6, -1.0)
