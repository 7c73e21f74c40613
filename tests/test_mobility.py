"""tiercut.mobility: radio and cells, paths, and the handover policies."""
import numpy as np
import pytest

from tiercut.mobility import (POLICIES, Radio, Workload, World, random_waypoint, recorded,
                              road, simulate)
from tiercut.mobility.paths import PathFileError

WL = Workload(device_s=0.02, up_bits=0.8e6, edge_s=0.015, down_bits=32e3,
              device_alone_s=0.12, cold_start_s=0.5, state_bits=90e6)


def test_rates_fall_with_distance_and_vanish_outside():
    r = Radio().rate_bps([10, 50, 100, 150])
    assert np.all(np.diff(r) < 0)
    assert 10e6 < r[1] < 100e6 and 1e6 < r[3] < 10e6
    w = World.line(2, 250.0, 150.0)
    rates = w.rates(np.array([[0, 0], [50, 0], [125, 0], [400, 0]]))
    assert rates.shape == (4, 2)
    assert rates[0, 0] > rates[1, 0] > rates[2, 0] > 0
    assert rates[0, 1] == 0 and rates[3, 0] == 0


def test_nearest_is_minus_one_outside():
    w = World.grid(2, 2, 200.0, 150.0)
    assert list(w.nearest(np.array([[100, 100], [300, 300], [1000, 1000]]))) == [0, 3, -1]


def test_paths_stay_in_area_and_move_at_speed():
    xy = random_waypoint(300.0, 1.4, pause_s=0.0, duration_s=600, dt=1.0, seed=3)
    assert xy.shape == (601, 2)
    assert xy.min() >= 0 and xy.max() <= 300
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert np.all(step <= 1.4 + 1e-9) and np.median(step) == pytest.approx(1.4)
    car = road(500.0, 15.0, duration_s=100, dt=0.5, seed=1)
    assert car[:, 0].min() >= 0 and car[:, 0].max() <= 500 and np.all(car[:, 1] == 0)
    assert np.median(np.abs(np.diff(car[:, 0]))) == pytest.approx(7.5)


def _drive():
    return World.line(4, 250.0, 150.0), road(750.0, 15.0, duration_s=200, dt=0.5, seed=2)


def test_never_never_migrates_and_nearest_follows_every_cell_change():
    w, xy = _drive()
    assert simulate("never", w, WL, xy, 0.5)["migrations"] == 0
    cells = w.nearest(xy)
    inside = cells[cells >= 0]
    changes = int((np.diff(inside) != 0).sum())
    r = simulate("nearest", w, WL, xy, 0.5)
    assert changes > 0 and r["migrations"] == changes == r["cold_starts"]


@pytest.mark.parametrize("seed", range(3))
def test_oracle_costs_no_more_than_any_policy(seed):
    w = World.grid(3, 3, 200.0, 150.0)
    xy = random_waypoint(600.0, 1.4, pause_s=10.0, duration_s=400, dt=1.0, seed=seed)
    totals = {p: simulate(p, w, WL, xy, 1.0)["total_s"] for p in POLICIES}
    assert all(totals["oracle"] <= t + 1e-9 for t in totals.values())


def test_outside_every_cell_runs_on_the_device():
    w = World.line(1, 250.0, 50.0)
    xy = np.array([[0.0, 0.0], [500.0, 0.0]])
    r = simulate("nearest", w, WL, xy, 1.0)
    assert r["outside"] == 1 and r["latency"][1] == WL.device_alone_s


def test_bad_workload_field_is_named():
    with pytest.raises(ValueError, match="Workload.cold_start_s=-1.*accepted"):
        Workload(device_s=0.02, up_bits=1e6, edge_s=0.01, down_bits=1e3,
                 device_alone_s=0.1, cold_start_s=-1, state_bits=1e6)
    with pytest.raises(ValueError, match="unknown policy 'fast'.*nearest"):
        w, xy = _drive()
        simulate("fast", w, WL, xy, 0.5)


def test_malformed_recorded_file_names_file_and_line(tmp_path):
    good = tmp_path / "ok.csv"
    good.write_text("t,x,y\n0,1,2\n1,3,4\n")
    assert recorded(good).tolist() == [[1, 2], [3, 4]]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,x,y\n0,1,2\n1,oops,4\n")
    with pytest.raises(PathFileError, match=r"bad\.csv:3: non-numeric"):
        recorded(bad)
