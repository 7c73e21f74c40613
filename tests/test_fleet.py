"""tiercut.fleet: cut options from the planner, users and cells, controllers, slotted queues."""
import numpy as np
import pytest

from handwritten import CHAIN
from tiercut.fleet import (CutOption, DriftPlusPenalty, DuplicateUserError, Edges, Fleet,
                           LoadAware, Nearest, NearestLoadAware, Users, Walkers, check_ids,
                           controller, options_for, run)
from tiercut.link.traces import BandwidthTrace
from tiercut.measure.predict import scale_profile
from tiercut.measure.profile import Profile
from tiercut.mobility import EdgeServer, World
from tiercut.planner import Host, Link, Scenario
from tiercut.planner.table import build_table

LOCAL = CutOption("device:9", 0.2, 0.0, 0.0)
HALF = CutOption("device:2 edge:7", 0.02, 0.4e6, 0.01, 0.01)
OPTIONS = (LOCAL, HALF)


def _scenario():
    p = Profile.from_dict(CHAIN)
    return Scenario(("device", "edge"),
                    (Host("device", "device", scale_profile(p, 1.0, "device")),
                     Host("edge", "edge", scale_profile(p, 5.0, "edge"))),
                    {("device", "edge"): Link(10e6, 0.005)})


def test_options_cost_what_the_planner_says_at_every_bandwidth():
    sc = _scenario()
    opts = options_for(sc)
    assert opts[0].local and len(opts) >= 2
    table = build_table(sc, low_bps=1e5, high_bps=1e10, load_tier="edge",
                        load_range=(1.0, 50.0))
    for bw in (2e5, 3e6, 5e7, 1e9):
        best = min(o.device_s + o.bits / bw + o.edge_s + o.fixed_s for o in opts)
        assert best == pytest.approx(min(e.cost(bw) for e in table.entries), rel=1e-9)


def test_bad_cut_options_are_named():
    with pytest.raises(ValueError, match="edge_s=-1"):
        CutOption("x", 0.1, 1.0, -1)
    with pytest.raises(ValueError, match="bits=0"):
        CutOption("x", 0.1, 0.0, 0.2)


def test_two_users_claiming_one_id_is_an_error_naming_it():
    assert check_ids(["a", 7, "b"]) == ("a", "7", "b")
    with pytest.raises(DuplicateUserError, match=r"'phone-3'.*users 1 and 3"):
        check_ids(["a", "phone-3", "b", "phone-3"])
    with pytest.raises(ValueError, match="user 1 has an empty id"):
        check_ids(["a", ""])


def test_bad_user_values_are_named():
    with pytest.raises(ValueError, match=r"rate_per_s\[1\]=-1"):
        Users(["a", "b"], [0.5, -1.0], 1.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="device_speed"):
        Users(["a", "b"], 0.5, 0.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="xy must be 2 finite"):
        Users(["a", "b"], 0.5, 1.0, np.zeros((3, 2)))


def test_walkers_stay_in_the_area_and_keep_their_speed():
    w = Walkers(500, (300.0, 200.0), speed_mps=(1.0, 2.0), pause_s=0.0, seed=4)
    last = w.xy.copy()
    for _ in range(200):
        xy = w.step(1.0).copy()
        assert xy.min() >= 0 and (xy[:, 0] <= 300).all() and (xy[:, 1] <= 200).all()
        assert (np.linalg.norm(xy - last, axis=1) <= w.speed + 1e-9).all()
        last = xy
    with pytest.raises(ValueError, match="speed_mps"):
        Walkers(3, 100.0, speed_mps=(2.0, 1.0))


def test_candidates_are_the_covering_servers_nearest_first():
    e = Edges(World.line(3, 200.0, 150.0))
    xy = np.array([[0.0, 0.0], [120.0, 0.0], [1000.0, 0.0]])
    cand = e.candidates(xy, 2)
    assert cand[0].tolist() == [0, -1] and cand[1].tolist() == [1, 0]
    assert cand[2].tolist() == [-1, -1]
    r = e.rates(xy, cand, e.trace_factors(0.0))
    assert r[1, 0] > r[1, 1] > 0 and r[0, 1] == 0 and (r[2] == 0).all()


def test_cell_traces_scale_each_cell_by_its_trace_over_its_mean():
    tr = BandwidthTrace((0.0, 10.0), (1e6, 3e6))
    e = Edges(World.line(2, 200.0, 150.0), cell_traces=[tr], trace_offsets_s=[0.0, 10.0])
    assert e.trace_factors(0.0).tolist() == [0.5, 1.5]
    assert e.trace_factors(10.0).tolist() == [1.5, 0.5]
    with pytest.raises(ValueError, match="BandwidthTrace"):
        Edges(World.line(2, 200.0, 150.0), cell_traces=["trace.csv"])


def _one_server_fleet(n, rate, xy, options=OPTIONS, cores=1, **kw):
    world = World((EdgeServer("e0", 0.0, 0.0, 150.0, speed=1.0),))
    users = Users([f"u{i}" for i in range(n)], rate, 1.0, xy)
    return Fleet(Edges(world, cores=cores), users, options, **kw)


def test_unloaded_user_gets_the_planners_best_latency_exactly():
    f = _one_server_fleet(1, 0.05, [[40.0, 0.0]])
    r_bps = f.edges.radio.rate_bps(40.0)
    expected = min(o.device_s + o.bits / r_bps + o.edge_s + o.fixed_s for o in OPTIONS)
    res = run(f, Nearest(), 2000.0, 1.0)
    assert res.requests > 50
    assert res.mean_s == pytest.approx(expected, rel=1e-9)
    assert res.local_share == 0.0  # at 40 m the split beats the device's 200 ms


def test_users_outside_every_cell_run_on_the_device_and_are_counted():
    f = _one_server_fleet(3, 0.2, [[500.0, 0.0]] * 3)
    res = run(f, LoadAware(), 500.0, 1.0)
    assert res.local_share == 1.0 and res.outside == res.requests > 0
    assert res.p50_s == pytest.approx(LOCAL.device_s, rel=0.02)


def test_load_blind_choice_overloads_a_shared_cell_and_load_aware_ones_stay_stable():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-60, 60, (300, 2))
    out = {}
    for ctl in (Nearest(), NearestLoadAware(), LoadAware(), DriftPlusPenalty(0.3)):
        out[ctl.name] = run(_one_server_fleet(300, 0.5, xy), ctl, 400.0, 1.0, seed=1)
    blind = out["nearest"]
    assert not blind.stable and blind.air_series[-1] > 50  # its airtime queue keeps growing
    for name in ("nearest, load-aware cut", "load-aware", "dpp V=0.3"):
        assert out[name].stable, name
        assert out[name].mean_s < 0.1 * blind.mean_s
        assert 0 < out[name].local_share < 1  # some users kept on the device, some sent


def test_drift_plus_penalty_with_a_huge_v_chooses_as_load_aware_does():
    rng = np.random.default_rng(2)
    xy = rng.uniform(-60, 60, (200, 2))
    a = run(_one_server_fleet(200, 0.5, xy), LoadAware(), 200.0, seed=3)
    b = run(_one_server_fleet(200, 0.5, xy), DriftPlusPenalty(1e9), 200.0, seed=3)
    assert a.mean_s == pytest.approx(b.mean_s, rel=1e-9) and a.local_share == b.local_share


def test_state_moves_are_counted_and_a_costly_move_is_avoided():
    world = World.line(2, 100.0, 150.0)
    xy = np.array([[50.0, 0.0]] * 40)  # midway: both servers as good
    res = {}
    for switch_s in (0.0, 10.0):
        users = Users([f"u{i}" for i in range(40)], 0.5, 1.0, xy)
        f = Fleet(Edges(world, cores=1), users, OPTIONS, switch_s=switch_s)
        res[switch_s] = run(f, LoadAware(), 300.0, seed=5)
    assert res[0.0].switches > 0
    assert res[10.0].switches < res[0.0].switches / 4


def test_bad_fleet_and_run_arguments_are_named():
    with pytest.raises(ValueError, match="no all-device cut"):
        _one_server_fleet(1, 0.1, [[0.0, 0.0]], options=(HALF,))
    with pytest.raises(ValueError, match="switch_s=-1"):
        _one_server_fleet(1, 0.1, [[0.0, 0.0]], switch_s=-1.0)
    with pytest.raises(ValueError, match="2 walkers for 1 users"):
        _one_server_fleet(1, 0.1, [[0.0, 0.0]], walkers=Walkers(2, 100.0))
    f = _one_server_fleet(1, 0.1, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="dt=0"):
        run(f, Nearest(), 10.0, dt=0)
    with pytest.raises(ValueError, match="batches=0"):
        run(f, Nearest(), 10.0, batches=0)
    with pytest.raises(ValueError, match="unknown controller 'fifo'"):
        controller("fifo")
    with pytest.raises(ValueError, match="V=-1"):
        DriftPlusPenalty(-1)
    with pytest.raises(ValueError, match="cores="):
        Edges(World.line(1, 100.0, 50.0), cores=0)


def test_the_cloud_takes_what_a_loaded_edge_cannot_and_costs_what_it_should():
    from tiercut.fleet import Cloud
    cloud = Cloud(speed=4.0, backhaul_bps=1e9, delay_s=0.02)
    world = World((EdgeServer("e0", 0.0, 0.0, 150.0),))
    one = Fleet(Edges(world, cores=1, cloud=cloud), Users(["u"], 0.05, 1.0, [[40.0, 0.0]]),
                OPTIONS)
    r_bps = one.edges.radio.rate_bps(40.0)
    edge = HALF.device_s + HALF.bits / r_bps + HALF.edge_s + HALF.fixed_s
    far = HALF.device_s + HALF.bits / r_bps + HALF.fixed_s + 0.04 + HALF.bits / 1e9 \
        + HALF.edge_s / 4.0
    assert run(one, LoadAware(), 1000.0).mean_s == pytest.approx(min(edge, far), rel=1e-9)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-60, 60, (300, 2))
    weak = Edges(World((EdgeServer("e0", 0.0, 0.0, 150.0, speed=0.2),)), cores=1, cloud=cloud)
    many = Fleet(weak, Users([f"u{i}" for i in range(300)], 0.3, 1.0, xy), OPTIONS)
    res = run(many, LoadAware(), 300.0, seed=2)
    assert res.stable and res.cloud_share > 0.2
    assert run(many, Nearest(), 300.0, seed=2).cloud_share == 0  # nearest: its server only
    with pytest.raises(ValueError, match="Cloud.speed=0"):
        Cloud(speed=0)
