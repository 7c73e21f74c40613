"""The simulator: exact against the planner when nothing queues, queues when overloaded,
policies ordered as they should be on synthetic traces, bad input named."""
from __future__ import annotations


import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from test_planner import three_tiers
from tiercut.adapt.policies import (FrameRateError, LyapunovPolicy, PolicyError, candidates,
                                    parse_policies)
from tiercut.link.traces import BandwidthTrace, TraceFileError, load_trace
from tiercut.planner import Host, Scenario, parse_link, plan
from tiercut.planner.table import build_table, with_device_bandwidth
from tiercut.measure.profile import NodeProfile, Profile
from tiercut.sim.run import prepare, run_policies
from tiercut.sim.simulator import Arrivals, SimError, Simulator, parse_arrivals, parse_duration
from tiercut.sim.timeline import Timeline
from tiercut.adapt.policies import DadsPolicy, StaticPolicy


def chain_profile(host: str, speed: float, n: int = 6) -> Profile:
    nodes = tuple(NodeProfile(f"n{i}", (f"n{i - 1}",) if i else (), 0.010 / speed,
                              output_bytes=20_000, param_bytes=1000) for i in range(n))
    return Profile(model="chain", host={"name": host}, input_bytes=150_000,
                   outputs=(nodes[-1].name,), nodes=nodes)


def edge_heavy() -> Scenario:
    """Edge fast and near, cloud a bit faster but far: the edge wins unless it is loaded."""
    hosts = (Host("phone", "device", chain_profile("phone", 0.1)),
             Host("e1", "edge", chain_profile("e1", 1.0)),
             Host("c1", "cloud", chain_profile("c1", 2.0)))
    links = {("device", "edge"): parse_link("100mbit,5ms"),
             ("edge", "cloud"): parse_link("1gbit,20ms"),
             ("device", "cloud"): parse_link("100mbit,25ms")}
    return Scenario(("device", "edge", "cloud"), hosts, links)


@pytest.mark.parametrize("seed", [0, 3])
def test_constant_trace_without_queueing_equals_planner(seed):
    sc = with_device_bandwidth(three_tiers(seed), 20e6)
    table = build_table(sc, low_bps=1e5, high_bps=1e9)
    sim = Simulator(sc, BandwidthTrace((0.0,), (20e6,)))
    for entry in table.entries:  # every plan the table keeps, each at its own prediction
        p = entry.plan
        from tiercut.planner.table import plan_cost
        want = plan_cost(sc, p)
        r = sim.run(StaticPolicy(p), Arrivals("periodic", 0.2), 50)
        assert np.abs(r.latency_s - want).max() < 1e-9
    best = plan(sc)
    r = sim.run(StaticPolicy(best), Arrivals("periodic", 0.2), 50)
    assert np.abs(r.latency_s - best.total_s).max() < 1e-9


def test_high_arrival_rate_queues():
    sc = with_device_bandwidth(three_tiers(0), 20e6)
    p = plan(sc)
    sim = Simulator(sc, BandwidthTrace((0.0,), (20e6,)))
    r = sim.run(StaticPolicy(p), Arrivals("periodic", 100), 5)
    assert r.latency_s[-1] > 10 * p.total_s
    assert np.all(np.diff(r.latency_s[10:]) > 0)  # the backlog keeps growing


def test_timeline_integrates_piecewise_rate():
    tl = Timeline(BandwidthTrace((0.0, 1.0, 2.0), (8e6, 0.0, 4e6)))  # loops every 3 s
    assert tl.finish(0.5, 4e6) == pytest.approx(1.0)
    assert tl.finish(0.5, 6e6) == pytest.approx(2.5)  # waits out the dead second
    assert tl.finish(2.5, 2e6 + 8e6) == pytest.approx(4.0)  # wraps into the next loop
    assert tl.bits_until(3.0) == pytest.approx(12e6)


def test_oracle_adaptive_static_order_on_step_trace():
    sc = three_tiers(0)
    step = BandwidthTrace((0.0, 30.0), (40e6, 1e6))
    setup = prepare(sc, step)
    res = {r.policy: r.summary()["mean_s"]
           for r in run_policies(setup, ["static", "adaptive", "oracle"], Arrivals("periodic", 1), 60)}
    assert res["oracle"] <= res["adaptive"] <= res["static"]
    assert res["adaptive"] < 0.5 * res["static"]


def test_adaptive_uses_the_table_for_its_estimate():
    sc = three_tiers(0)
    setup = prepare(sc, BandwidthTrace((0.0, 30.0), (40e6, 1e6)))
    from tiercut.adapt.policies import AdaptivePolicy
    from tiercut.adapt.estimators import Observation
    pol = AdaptivePolicy(setup.setting.table, 40e6)
    assert pol.next_plan(0.0) is setup.setting.table.best(40e6)
    for i in range(3):
        pol.observe(Observation(float(i), 8e6, 8.0))  # 1 Mbit/s transfers
    assert pol.bandwidth.estimate_bps == pytest.approx(1e6)
    assert pol.next_plan(3.0) is setup.setting.table.best(1e6)


def test_loadaware_beats_load_blind_under_square_wave():
    sc = edge_heavy()
    bw = BandwidthTrace((0.0,), (100e6,))
    load = BandwidthTrace((0.0, 10.0), (1.0, 4.0))
    setup = prepare(sc, bw, load, "edge")
    res = {r.policy: r.summary()["mean_s"]
           for r in run_policies(setup, ["adaptive", "loadaware"], Arrivals("periodic", 2), 120)}
    assert res["loadaware"] < 0.86 * res["adaptive"]


def test_lyapunov_larger_v_less_energy_longer_queues():
    sc = three_tiers(0)
    setup = prepare(sc, BandwidthTrace((0.0, 30.0), (40e6, 1e6)))
    out = []
    for V in (0.01, 100.0):
        setup.setting.V = V
        s = run_policies(setup, ["lyapunov"], Arrivals("periodic", 2), 60)[0].summary()
        out.append((s["energy_j_per_request"], s["mean_s"]))
    assert out[1][0] < out[0][0]
    assert out[1][1] > out[0][1]


def test_lyapunov_sees_the_queue_on_the_devices_return_link():
    # at 10 Mbit/s the cheapest option offloads and gets back more bits than it sends: the
    # downlink is its bottleneck, over a request's period. A policy blind to that queue keeps
    # choosing it and the latency grows without bound (minutes by the end of this run)
    sc = three_tiers(0)
    wide = prepare(sc, BandwidthTrace((0.0, 1.0), (0.5e6, 200e6)))
    setup = prepare(sc, BandwidthTrace((0.0,), (10e6,)))
    policy = LyapunovPolicy(sc, candidates(wide.setting.table), 1.0, 10e6)
    cheapest = min(policy.options(10e6), key=lambda o: o[0])
    assert cheapest[1] > 0.9
    r = setup.simulator.run(policy, Arrivals("periodic", 1 / 0.9), 1800.0)
    assert r.latency_s[len(r.latency_s) // 2:].mean() < 3.0


def test_dads_reports_unreachable_frame_rate():
    sc = three_tiers(0)
    setup = prepare(sc, BandwidthTrace((0.0,), (2e6,)))
    setup.setting.fps = 1000.0
    r = run_policies(setup, ["dads"], Arrivals("periodic", 5), 4)[0]
    assert r.notes and "cannot be sustained" in r.notes[0]
    strict = DadsPolicy(sc, setup.setting.table, 1000.0, 2e6, strict=True)
    with pytest.raises(FrameRateError, match="frames/s cannot be sustained"):
        strict.next_plan(0.0)
    easy = DadsPolicy(sc, setup.setting.table, 0.01, 2e6, strict=True)
    assert easy.next_plan(0.0) is setup.setting.table.best(2e6) and not easy.unreachable


@pytest.mark.parametrize("text,want", [("poisson:5/s", Arrivals("poisson", 5.0)),
                                       ("periodic:10/s", Arrivals("periodic", 10.0)),
                                       ("periodic:2.5", Arrivals("periodic", 2.5))])
def test_parse_arrivals(text, want):
    assert parse_arrivals(text) == want


@pytest.mark.parametrize("text", ["poison:5/s", "poisson:-1/s", "poisson:0/s", "periodic:x/s", ""])
def test_bad_arrivals(text):
    with pytest.raises(SimError, match="arrivals"):
        parse_arrivals(text)


def test_durations():
    assert parse_duration("600s") == 600 and parse_duration("10m") == 600
    assert parse_duration("500ms") == 0.5
    for bad in ("-3s", "0", "soon", "10 parsecs"):
        with pytest.raises(SimError, match="duration"):
            parse_duration(bad)


def test_bad_policy_names():
    assert parse_policies("static, oracle") == ["static", "oracle"]
    with pytest.raises(PolicyError, match="unknown policy 'magic'.*static, adaptive"):
        parse_policies("static,magic")


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("0\t1.0\n1\t2.0\n0.5\t3.0\n", "line 3: time"),
    ("0\t1.0\n1\t-2.0\n", "line 2: rate"),
    ("0\t1.0\n1\tfast\n", "line 2: .* not two numbers"),
    ("hello world how are you\n", "line 1: expected"),
    ("0\n5\n3\n", "line 3: timestamp 3 ms goes back"),
    ("0\n5\nx\n", "line 3: mahimahi"),
])
def test_bad_trace_files_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.trace"
    path.write_text(text)
    with pytest.raises(TraceFileError, match=match) as exc:
        load_trace(path)
    assert str(path) in str(exc.value)


def test_mahimahi_trace(tmp_path):
    # 10 packets in each 100 ms for 1 s: 10 * 1500 * 8 / 0.1 = 1.2 Mbit/s throughout
    stamps = [i * 10 for i in range(1, 101)]
    path = tmp_path / "m.trace"
    path.write_text("\n".join(map(str, stamps)) + "\n")
    tr = load_trace(path)
    assert tr.duration_s == pytest.approx(1.0)
    assert tr.mean_bps == pytest.approx(1.2e6)


def test_simulate_cli(tmp_path):
    from tiercut.cli.simulate import simulate_cmd
    import yaml

    sc = three_tiers(0)
    names = []
    for h in sc.hosts:
        h.profile.save(tmp_path / f"{h.name}.json")
        names.append({"name": h.name, "tier": h.tier, "profile": f"{h.name}.json"})
    links = {"device-edge": "20mbit,10ms", "edge-cloud": "200mbit,15ms", "device-cloud": "8mbit,40ms"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"hosts": names, "links": links}))
    (tmp_path / "bw.txt").write_text("0\t40\n30\t1\n")
    (tmp_path / "load.txt").write_text("0 1\n10 4\n")
    app = typer.Typer()
    app.command("simulate")(simulate_cmd)
    app.command("other")(lambda: None)
    runner = CliRunner()
    base = ["simulate", "--scenario", str(tmp_path / "s.yaml"), "--trace", str(tmp_path / "bw.txt")]
    r = runner.invoke(app, base + ["--arrivals", "periodic:1/s", "--duration", "60s",
                                   "--load-trace", str(tmp_path / "load.txt"),
                                   "--policy", "static,adaptive,hedged,loadaware,oracle,lyapunov",
                                   "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"),
                                   "--plot", str(tmp_path / "fig"), "--deadline", "1s"])
    assert r.exit_code == 0, r.output
    assert "adaptive" in r.output and (tmp_path / "fig-cdf.png").exists()
    assert (tmp_path / "fig-timeline.png").exists() and (tmp_path / "o.csv").read_text().count("\n") == 7
    import json
    data = json.loads((tmp_path / "o.json").read_text())
    assert {p["policy"] for p in data["policies"]} == {"static", "adaptive", "hedged", "loadaware",
                                                       "oracle", "lyapunov"}
    assert "hedged" in (tmp_path / "o.csv").read_text().splitlines()[0]
    for args, match in ((["--arrivals", "soon"], "arrivals 'soon'"),
                        (["--policy", "static,nope"], "unknown policy 'nope'"),
                        (["--duration", "-5s"], "duration '-5s'"),
                        (["--probe-every", "0"], "probe interval 0.0 must be > 0"),
                        (["--window", "0"], "estimator window 0 must be"),
                        (["--hedge-window", "-1"], "hedge window -1.0 must be > 0"),
                        (["--hedge-after", "-1"], "hedge delay -1.0 must be >= 0")):
        r = runner.invoke(app, base + args)
        assert r.exit_code == 2 and match in r.output, r.output


def test_idle_probes_see_a_rise_that_all_device_requests_cannot():
    """At 1 Mbit/s the device keeps everything and sends nothing; only probes tell it that the
    link is back at 40 Mbit/s."""
    from tiercut.adapt.policies import AdaptivePolicy

    sc = three_tiers(0)
    step = BandwidthTrace((0.0, 20.0), (1e6, 40e6))
    setup = prepare(sc, step)
    table = setup.setting.table
    assert setup.simulator.costs(table.best(1e6)).device_bits == 0  # all on the device
    times = Arrivals("periodic", 2).times(39.0)
    late = times >= 25.0
    deaf = setup.simulator.run(AdaptivePolicy(table, 1e6, probe_every_s=float("inf")), times, 39)
    probed = setup.simulator.run(AdaptivePolicy(table, 1e6, probe_every_s=1.0), times, 39)
    assert deaf.switches == 0
    assert probed.switches == 1 and probed.latency_s[late].mean() < 0.5 * deaf.latency_s[late].mean()


def test_a_stuck_transfer_keeps_later_requests_off_the_link():
    """The link stalls for 10 s: the device sees its transfer still under way and keeps the
    requests that follow on the device instead of queueing them behind it."""
    from tiercut.adapt.policies import AdaptivePolicy

    sc = three_tiers(0)
    trace = BandwidthTrace((0.0, 10.0, 20.0), (40e6, 0.0, 40e6))
    setup = prepare(sc, trace)
    table = setup.setting.table
    times = Arrivals("periodic", 2).times(30.0)
    r = setup.simulator.run(AdaptivePolicy(table, 40e6), times, 30)
    sent = [setup.simulator.costs(table.best(1e6)).cut != r.cuts[i] for i in r.plan_index]
    stalled = (times >= 10.0) & (times < 20.0)
    assert sum(s for s, st in zip(sent, stalled) if st) <= 1  # the first one, at most
    assert np.median(r.latency_s[stalled]) < 0.5  # all but the first: on the device, no wait


def test_a_probe_stuck_in_a_stall_keeps_the_next_request_on_the_device():
    """The link stalls from 10 s to 20 s while nothing is being sent. The idle probe started
    at about 10 s is still under way at the next arrival (12.5 s): the policy is told so, and
    keeps that request on the device instead of sending it into the stall."""
    from tiercut.adapt.policies import AdaptivePolicy

    sc = three_tiers(0)
    trace = BandwidthTrace((0.0, 10.0, 20.0), (40e6, 0.0, 40e6))
    setup = prepare(sc, trace)
    table = setup.setting.table
    device = setup.simulator.costs(table.best(1e3)).cut
    assert setup.simulator.costs(table.best(40e6)).cut != device  # offloads while the link is up
    times = np.array([0.0, 3.0, 6.0, 9.0, 12.5, 15.0, 17.5, 22.0])
    r = setup.simulator.run(AdaptivePolicy(table, 40e6, probe_every_s=1.0), times, 25.0)
    cuts = [r.cuts[i] for i in r.plan_index]
    assert cuts[3] != device and all(c == device for c in cuts[4:7])
    assert r.latency_s[4:7].max() < 2.0  # not the wait for the stall to end
