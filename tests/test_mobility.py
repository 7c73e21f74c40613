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


# --- splits from the planner, options, hop-count backhaul, traces, outages, many users ---

from tiercut.link.traces import BandwidthTrace  # noqa: E402
from tiercut.mobility import AwareRule, CellTraces, recorded_users, workloads_from_table  # noqa
from tiercut.mobility.handover import latency_table, migration_matrix  # noqa: E402


def _toy_table():
    from tiercut.measure.profile import ModelInput, NodeProfile, Profile
    from tiercut.planner import Host, Link, Scenario
    from tiercut.planner.table import build_table

    def prof(k):
        return Profile("toy", {}, 8000, ("b",),
                       (NodeProfile("a", ("x",), 0.1 * k, 1000, param_bytes=10),
                        NodeProfile("b", ("a",), 0.1 * k, 100, param_bytes=20)),
                       inputs=(ModelInput("x", 8000),))
    sc = Scenario(("device", "edge"), (Host("device", "device", prof(1.0)),
                                       Host("edge", "edge", prof(0.1))),
                  {("device", "edge"): Link(1e6, 0.005)})
    return build_table(sc, low_bps=1e3, high_bps=1e9), prof(1.0)


def test_workloads_from_table_reads_each_split():
    table, prof = _toy_table()
    wl = {w.name.split(" cut ")[0]: w for w in workloads_from_table(table, 0.5, profile=prof)}
    assert set(wl) == {"device:2", "edge:2", "device:1 edge:1"}
    alone, edge, mid = wl["device:2"], wl["edge:2"], wl["device:1 edge:1"]
    assert alone.up_bits == alone.edge_s == alone.state_bits == 0 and alone.device_s == 0.2
    assert edge.up_bits == 64000 and edge.down_bits == 800 and edge.state_bits == 240
    assert mid.up_bits == 8000 and mid.down_bits == 800 and mid.state_bits == 160
    assert mid.device_s == pytest.approx(0.1) and mid.edge_s == pytest.approx(0.01)
    assert mid.fixed_s == pytest.approx(0.01)  # 5 ms each way
    assert all(w.device_alone_s == 0.2 for w in wl.values())
    with pytest.raises(ValueError, match="state_bits"):
        workloads_from_table(table, 0.5)


def test_options_take_the_elementwise_min():
    w = World.line(3, 250.0, 150.0, backhaul="hops")
    xy = np.array([[0, 0], [100, 0], [140, 0], [600, 0], [2000, 0]], dtype=float)
    a = Workload(0.0, 4e6, 0.02, 3e4, 0.3, 0.5, 1e8)
    b = Workload(0.1, 4e5, 0.01, 3e4, 0.3, 0.5, 2e8)
    _, la = latency_table(w, a, xy)
    _, lb = latency_table(w, b, xy)
    _, both = latency_table(w, (a, b), xy)
    assert np.allclose(both, np.minimum(np.minimum(la, lb), 0.3))
    assert (both < la).any() and (both < lb).any()  # each option wins somewhere
    assert np.all(both[-1] == 0.3)  # outside every cell: the device alone
    assert migration_matrix(w, (a, b))[0, 2] == pytest.approx(2 * 0.002 + 2e8 / 1e9)
    with pytest.raises(ValueError, match="non-empty tuple of Workloads"):
        latency_table(w, (), xy)


def test_hop_counts_by_layout():
    g = World.grid(3, 3, 200.0, 150.0, backhaul="hops").hop_matrix
    assert g[0, 8] == 4 and g[0, 1] == 1 and g[4, 0] == 2 and np.all(np.diag(g) == 0)
    assert np.array_equal(World.grid(3, 3, 200.0, 150.0, hops="distance").hop_matrix, g)
    line = World.line(5, 250.0, 150.0, backhaul="hops").hop_matrix
    assert line[0, 4] == 4 and line[3, 1] == 2
    uniform = World.line(5, 250.0, 150.0).hop_matrix
    assert np.array_equal(uniform, 1 - np.eye(5, dtype=int))
    with pytest.raises(ValueError, match="backhaul='ring'.*'uniform'"):
        World.line(3, 250.0, 150.0, backhaul="ring")
    with pytest.raises(ValueError, match="symmetric 2x2"):
        World(World.line(2, 250.0, 150.0).servers, hops=[[0, 1], [2, 0]])
    with pytest.raises(ValueError, match="hops='bfs'"):
        World(World.line(2, 250.0, 150.0).servers, hops="bfs")


def test_latency_pays_each_backhaul_hop():
    xy = np.array([[0.0, 0.0]])
    for saf in (False, True):
        w = World.line(4, 250.0, 150.0, backhaul="hops", store_and_forward=saf)
        _, lat = latency_table(w, WL, xy)
        for h in (1, 2, 3):  # request and reply each pay h delays; the bits once or h times
            want = h * 2 * 0.002 + (h if saf else 1) * (0.8e6 + 32e3) / 1e9
            assert lat[0, h] - lat[0, 0] == pytest.approx(want), (saf, h)


def test_migrations_pay_state_over_the_hops():
    w = World.line(3, 250.0, 150.0, backhaul="hops")
    xy = np.array([[0.0, 0]] * 3 + [[500.0, 0]] * 3)  # a jump over two hops
    r = simulate("nearest", w, WL, xy, 1.0)
    assert r["migrations"] == 1 and r["migration_s"] == pytest.approx(2 * 0.002 + 90e6 / 1e9)


def _trace(rates):
    return BandwidthTrace(tuple(float(i) for i in range(len(rates))), tuple(rates))


def test_cell_traces_give_the_rate_of_the_serving_cell():
    tr = CellTraces((_trace([1e6, 2e6, 3e6]), _trace([5e6])), scale=10.0, offsets_s=(1.0, 0.0))
    w = World.line(2, 250.0, 150.0, cell_traces=tr)
    xy = np.array([[0.0, 0], [0.0, 0], [250.0, 0], [600.0, 0]])
    r = w.rates(xy, t=[0.0, 1.5, 0.0, 0.0])
    assert r[0, 0] == 2e7 and r[1, 0] == 3e7 and r[2, 1] == 5e7 and r[0, 1] == 0
    assert np.all(r[3] == 0)  # outside every cell
    assert w.rates(xy[:1], t=[2.0])[0, 0] == 1e7  # it loops: 2 + 1 s is 0 s into loop two
    far = World.line(2, 250.0, 150.0, cell_traces=CellTraces(tr.traces, distance_scaled=True))
    near, edge = far.rates(np.array([[10.0, 0], [140.0, 0]]), t=[0.0, 0.0])[:, 0]
    assert near > 1e6 > edge
    with pytest.raises(ValueError, match="pass t"):
        w.rates(xy)
    with pytest.raises(ValueError, match="1 traces for 2 servers"):
        World.line(2, 250.0, 150.0, cell_traces=CellTraces((_trace([1e6]),)))
    with pytest.raises(ValueError, match="scale=0"):
        CellTraces((_trace([1e6]),), scale=0)
    lat = simulate("aware", w, WL, np.array([[0.0, 0]] * 4 + [[250.0, 0]] * 4), 1.0)["latency"]
    assert np.all(np.isfinite(lat))


def test_destination_down_mid_migration_is_aborted():
    w = World.line(2, 250.0, 150.0)
    wl = Workload(0.02, 0.8e6, 0.015, 32e3, 0.12, 0.5, state_bits=1e9)  # 1 s in flight
    xy = np.array([[0.0, 0]] * 3 + [[250.0, 0]] * 4)
    r = simulate("nearest", w, wl, xy, 1.0, outages={1: [(3.5, 3.6)]})
    assert r["aborted"] == 1 and r["migrations"] == 2 and r["lost"] == 0
    _, lat = latency_table(w, wl, xy)
    assert r["latency"][3] == pytest.approx(lat[3, 0])  # still served from server 0
    assert r["latency"][4] == pytest.approx(lat[4, 1] + 0.5)  # moved at the retry: cold


def test_stage_on_a_server_that_goes_down_runs_on_the_device_then_is_placed_again():
    w = World.line(2, 250.0, 150.0)
    xy = np.array([[0.0, 0]] * 12)
    _, lat = latency_table(w, WL, xy)
    for policy in ("nearest", "never", "aware"):
        r = simulate(policy, w, WL, xy, 1.0, outages={0: [(5.5, 6.5)]})
        assert r["lost"] == 1 and r["cold_starts"] == 1 and np.all(np.isfinite(r["latency"]))
        assert r["latency"][6] == WL.device_alone_s
        assert r["latency"][7] == pytest.approx(lat[7, 0] + WL.cold_start_s)
    r = simulate("nearest", w, WL, xy, 1.0, outages={0: [(5.5, 9.5)]})
    assert r["latency"][7] == pytest.approx(lat[7, 1] + WL.cold_start_s)  # the other server
    assert r["migrations"] == 1 and r["latency"][10] == pytest.approx(lat[10, 0] + 0.5)
    o = simulate("oracle", w, WL, xy, 1.0, outages={0: [(5.5, 6.5)], 1: [(0, 20)]})
    assert o["latency"][6] == WL.device_alone_s and np.all(np.isfinite(o["latency"]))
    with pytest.raises(ValueError, match="server 2 is not an index 0..1"):
        simulate("never", w, WL, xy, 1.0, outages={2: [(0, 1)]})
    with pytest.raises(ValueError, match=r"outages\[0\].*t0 < t1"):
        simulate("never", w, WL, xy, 1.0, outages={0: [(3, 1)]})


@pytest.mark.parametrize("seed", range(2))
def test_oracle_is_a_lower_bound_with_options_hops_and_outages(seed):
    w = World.grid(3, 3, 200.0, 150.0, backhaul="hops")
    b = Workload(0.1, 4e5, 0.01, 3e4, 0.12, 0.5, 9e7)
    xy = random_waypoint(600.0, 1.4, pause_s=10.0, duration_s=300, dt=1.0, seed=seed)
    out = {4: [(50.0, 120.0)], 1: [(10.0, 200.0)]}
    totals = {p: simulate(p, w, (WL, b), xy, 1.0, outages=out)["total_s"] for p in POLICIES}
    assert all(totals["oracle"] <= t + 1e-9 for t in totals.values())


def test_recorded_users_splits_by_id_and_names_duplicates(tmp_path):
    good = tmp_path / "users.csv"
    good.write_text("t,user,x,y\n1,a,3,4\n0,a,1,2\n0,b,9,9\n")
    users = recorded_users(good)
    assert users["a"].tolist() == [[1, 2], [3, 4]] and users["b"].tolist() == [[9, 9]]
    dup = tmp_path / "dup.csv"
    dup.write_text("t,user,x,y\n0,a,1,2\n0,b,5,5\n1,a,3,4\n0,a,7,7\n")
    with pytest.raises(PathFileError, match=r"dup\.csv: user 'a'.*t=0 \(lines 2 and 5\)"):
        recorded_users(dup)
    with pytest.raises(PathFileError, match=r"bad\.csv:1: header"):
        bad = tmp_path / "bad.csv"
        bad.write_text("t,x,y\n0,1,2\n")
        recorded_users(bad)


def test_bad_rule_and_dt_are_named():
    with pytest.raises(ValueError, match="AwareRule.history=0"):
        AwareRule(history=0)
    with pytest.raises(ValueError, match="AwareRule.horizon_s=-1"):
        AwareRule(horizon_s=-1)
    w, xy = _drive()
    with pytest.raises(ValueError, match="dt=0"):
        simulate("never", w, WL, xy, 0)


def test_aware_pre_warms_at_a_price_and_beats_both_baselines_on_a_drive():
    w = World.line(4, 250.0, 150.0, backhaul="hops")
    xy = road(750.0, 15.0, duration_s=200, dt=0.5, seed=2)
    res = {p: simulate(p, w, WL, xy, 0.5) for p in POLICIES}
    a = res["aware"]
    assert a["prewarms"] > 0 and a["cold_starts"] < res["nearest"]["cold_starts"]
    assert a["migration_s"] >= a["prewarms"] * (0.002 + 90e6 / 1e9)  # each copy paid
    assert a["total_s"] < min(res["nearest"]["total_s"], res["never"]["total_s"])
    plain = simulate("aware", w, WL, xy, 0.5, rule=AwareRule(prewarm=False))
    assert plain["prewarms"] == 0 and plain["cold_starts"] == plain["migrations"]


def test_nearest_warm_follows_like_nearest_without_its_cold_starts():
    w, xy = _drive()
    plain, warm = (simulate(p, w, WL, xy, 0.5) for p in ("nearest", "nearest-warm"))
    assert warm["migrations"] == plain["migrations"] > 0
    assert plain["cold_starts"] == plain["migrations"] and warm["cold_starts"] == 0
    assert warm["prewarms"] > 0 and warm["latency"].sum() < plain["latency"].sum()
