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


def test_load_levels_kept_in_the_table_are_answered_exactly():
    sc = three_tiers(2, n=8)
    loads = (1.0, 2.0, 4.0)
    table = build_table(sc, load_tier="edge", loads=loads)
    for load in loads:
        for bps in np.geomspace(1e5, 1e10, 40):
            s = with_load(with_device_bandwidth(sc, bps), "edge", load)
            assert math.isclose(plan_cost(s, table.best(bps, load)), plan(s).value, rel_tol=1e-9)


def test_bad_ranges_and_bandwidths():
    sc = three_tiers(0)
    with pytest.raises(ScenarioError, match=r"0 < low < high"):
        build_table(sc, low_bps=1e9, high_bps=1e6)
    table = build_table(sc)
    with pytest.raises(ScenarioError, match=r"bandwidth must be > 0"):
        table.best(0.0)
