"""The live view: events built from a real plan and real measurements (a SplitClient against a
tier server on loopback), served by the Dashboard, and drawn by the page in a real headless
chromium (skipped where none is installed), which must show what is published after it
loaded. The screenshot goes to out/dashboard.png."""
from __future__ import annotations

import functools
import json
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tiercut.cli import app
from tiercut.dashboard import (Dashboard, DashboardError, EventError, EventLog, Feed,
                               estimate_event, plan_event, read_events, replay, request_event,
                               switch_event)

OUT = Path(__file__).resolve().parents[1] / "out"
MODEL = "digits_cnn"


@pytest.fixture(scope="module")
def run():
    """A planned cut of the digits CNN between the device and an edge server, and five real
    requests of it: (Plan, [Measurement, ...])."""
    from tiercut.planner import plan
    from tiercut.planner.build import Constraints
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread

    profile, x = _profile()
    names = [n.name for n in profile.nodes]
    scenario = _scenario(profile, 0.5, 1.0, 50e6)
    # the first node on the device, the last on the edge: a cut in between, whatever is fastest
    cut = plan(scenario, constraints=Constraints(pin={names[0]: "device", names[-1]: "edge"}))
    server = serve_in_thread([MODEL], threads=1)
    try:
        with SplitClient(cut.to_dict(), [server.endpoint]) as client:
            measured = [client.infer(*x)[1] for _ in range(5)]
    finally:
        server.stop(0)
    return cut, measured


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the servers run: same kernels
    yield
    torch.set_num_threads(threads)


@functools.cache
def _profile():
    from tiercut.measure.profiler import ProfileSettings, profile_model
    from tiercut.zoo import entry

    zoo = entry(MODEL)
    model, x = zoo.build(), zoo.example_inputs()
    return profile_model(model, x, name=MODEL, settings=ProfileSettings(threads=1, repeat=2)), x


def _scenario(profile, device_speed: float, edge_speed: float, bps: float):
    from tiercut.measure.predict import scale_profile
    from tiercut.planner import Host, Link, Scenario

    hosts = (Host("phone", "device", scale_profile(profile, device_speed, "phone")),
             Host("edge", "edge", scale_profile(profile, edge_speed, "edge")))
    return Scenario(("device", "edge"), hosts, {("device", "edge"): Link(bps, 0.001)})


@pytest.fixture(scope="module")
def adaptive_log(tmp_path_factory):
    """An adaptive client's run on the digits CNN against an edge server, watched: its events
    as logged. The table is planned for a device 20x slower than here and an edge 4x faster:
    the device alone below about 0.3 Mbit/s, all on the edge above. The policy starts at
    0.1 Mbit/s (the device's plan, which sends nothing), and the idle probes between requests
    show it the loopback's rate: it switches to the edge."""
    from tiercut.adapt.client import AdaptiveClient
    from tiercut.adapt.policies.adaptive import AdaptivePolicy
    from tiercut.dashboard.adaptive import watch
    from tiercut.planner.table import build_table
    from tiercut.runtime.launch import serve_in_thread

    profile, x = _profile()
    scenario = _scenario(profile, 0.05, 4.0, 1e5)
    policy = AdaptivePolicy(build_table(scenario, low_bps=1e4, high_bps=1e10), 1e5,
                            probe_every_s=0.01)
    path = tmp_path_factory.mktemp("adaptive") / "events.jsonl"
    server = serve_in_thread([MODEL], threads=1)
    try:
        with Feed(log=EventLog(path)) as feed, AdaptiveClient(policy, {"edge": server.endpoint}) \
                as client:
            infer = watch(feed, client)
            for i in range(12):
                infer(*x)
                if i == 3:
                    assert client.idle(0.1) >= 1  # probes: the policy asked for them
    finally:
        server.stop(0)
    return read_events(path)


def test_the_adaptive_client_publishes_plans_switches_and_estimates(adaptive_log):
    kinds = [e["type"] for e in adaptive_log]
    assert kinds.count("request") == 12 and kinds.count("estimate") >= 1
    plans = {e["id"]: e for e in adaptive_log if e["type"] == "plan"}
    assert all(len(e["breakpoints_bps"]) == 1 for e in plans.values())  # the table's one
    ran = [e["plan"] for e in adaptive_log if e["type"] == "request"]
    assert set(ran) == set(plans) and len(plans) == 2  # the device's plan, then the edge's
    assert not plans[ran[0]]["hops"] and plans[ran[-1]]["hops"]
    switches = [(e["from"], e["to"]) for e in adaptive_log if e["type"] == "switch"]
    assert switches == [(a, b) for a, b in zip(ran, ran[1:]) if a != b] and switches
    # where the edge's plan stops beating the device: the table's breakpoint, both ways found
    edge = plans[ran[-1]]
    assert edge["break_even_bps"] == pytest.approx(edge["breakpoints_bps"][0], rel=1e-6)
    estimates = [e["bps"] for e in adaptive_log if e["type"] == "estimate"]
    assert estimates[-1] > edge["break_even_bps"]


def test_events_say_where_the_cut_is_and_where_the_time_went(run):
    cut, measured = run
    event = plan_event(cut, "pinned")
    tiers = {t["name"]: t["nodes"] for t in event["tiers"]}
    assert set(tiers) == {"device", "edge"} and tiers["device"] and tiers["edge"]
    assert sorted(tiers["device"] + tiers["edge"]) == sorted(cut.assignment)
    (hop,) = event["hops"]
    assert hop["bytes"] == cut.hops[0].bytes > 0 and hop["tensors"] == list(cut.hops[0].tensors)
    # the same cut given as a plan's JSON gets the same id
    assert plan_event(json.loads(json.dumps(cut.to_dict())))["id"] == event["id"]
    m = measured[-1]
    req = request_event(m, event["id"])
    assert req["compute_s"]["device"] == m.device_s
    assert req["compute_s"]["edge"] == m.servers[0].compute_s > 0
    assert req["transfer_s"]["device-edge"] == m.hops[0].seconds
    assert req["bytes"]["device-edge"] == m.hops[0].bytes_sent + m.hops[0].bytes_returned
    assert not req["fallback"]
    json.dumps(req)  # plain data


def test_a_malformed_event_names_its_field():
    with Dashboard() as board:
        board.start(0)
        with pytest.raises(EventError, match="'total_s'"):
            board.publish({"type": "request", "id": "r1", "plan": "p", "compute_s": {},
                           "transfer_s": {}, "fallback": False})
        with pytest.raises(EventError, match=r"'compute_s'\['edge'\] is 'slow'"):
            board.publish({"type": "request", "id": "r1", "plan": "p", "total_s": 0.1,
                           "compute_s": {"edge": "slow"}, "transfer_s": {}, "fallback": False})
        with pytest.raises(EventError, match="'type' is 'plane'; known: plan"):
            board.publish({"type": "plane"})
        with pytest.raises(EventError, match="'bps' is -5"):
            board.publish(estimate_event(-5))
        board.publish(switch_event("a", "b"))  # still serving after the bad ones
        assert _get(board.url + "state")[-1]["type"] == "switch"


@pytest.mark.parametrize("port", [70000, "abc", -1, "8080x"])
def test_a_bad_port_is_named(port):
    with pytest.raises(DashboardError, match=f"port {port!r} is not a port: give 0-65535"):
        Dashboard().start(port)


def test_a_port_in_use_says_so():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is in use"):
            Dashboard().start(port)


def test_the_cli_names_a_bad_dashboard_port(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "tiercut-stageplan/1", "model": MODEL,
                                "tiers": ["device"], "assignment": {}}))
    result = CliRunner().invoke(app, ["bench", "--plan", str(plan), "--dashboard", "70000"])
    assert result.exit_code == 2
    assert "70000" in result.output and "0-65535" in result.output


def test_a_late_page_gets_the_plan_and_history_then_what_follows(run):
    """Server-sent events read by hand: the backlog first, then a request published later."""
    cut, measured = run
    with Dashboard() as board:
        board.start(0)
        pid = board.publish(plan_event(cut))["id"]
        for m in measured[:2]:
            board.publish(request_event(m, pid))
        with urllib.request.urlopen(board.url + "events", timeout=10) as stream:
            seen = [_next_event(stream) for _ in range(3)]
            assert [e["type"] for e in seen] == ["plan", "request", "request"]
            board.publish(request_event(measured[2], pid))
            assert _next_event(stream)["id"] == measured[2].request_id


def test_a_logged_run_replays_at_its_pace(run, tmp_path):
    cut, measured = run
    path = tmp_path / "run.jsonl"
    feed = Feed(log=EventLog(path), clock=iter(range(100)).__next__)  # t = 1, 2, 3 ...
    with feed:
        pid = feed.plan(cut, "x")
        assert feed.plan(cut, "x") == pid  # sent once
        for m in measured[:2]:
            feed.request(m, pid)
    events = read_events(path)
    assert [e["type"] for e in events] == ["plan", "request", "request"]
    gaps, published = [], []
    assert replay(events, published.append, speed=2.0, sleep=gaps.append) == 3
    assert gaps == [0.5, 0.5] and published == events
    path.write_text(path.read_text() + '{"type": "estimate", "t": 9}\n')
    with pytest.raises(EventError, match=r"run.jsonl:4: estimate event has no field 'bps'"):
        read_events(path)


def test_the_page_updates_as_requests_complete(run, adaptive_log, tmp_path):
    cut, measured = run
    driver = _chromium(tmp_path)
    try:
        with Dashboard() as board:
            url = board.start(0)
            pid = board.publish(plan_event(cut, "digits split"))["id"]
            board.publish(estimate_event(50e6, "test link"))
            for m in measured[:3]:
                board.publish(request_event(m, pid))
            driver.get(url)
            wait = _wait(driver)
            wait.until(lambda d: d.find_element("id", "count").text == "3")
            shown = [e.get_attribute("data-tier") for e in
                     driver.find_elements("css selector", "#tiers .tier")]
            assert shown == ["device", "edge"]
            sent = cut.hops[0].bytes  # as the page writes it
            sent = f"{sent} B" if sent < 1024 else f"{sent / 1024:.1f} KiB"
            assert sent in driver.find_element("id", "tiers").text
            for m in measured[3:]:  # after the page loaded
                board.publish(request_event(m, pid))
                board.publish(estimate_event(40e6, "test link"))
            wait.until(lambda d: d.find_element("id", "count").text == str(len(measured)))
            assert driver.find_element("id", "status").text == "live"
            OUT.mkdir(exist_ok=True)
            driver.save_screenshot(str(OUT / "dashboard.png"))
        with Dashboard() as board:  # the adaptive run, as tiercut dashboard --replay shows it
            url = board.start(0)
            replay(adaptive_log, board.publish, sleep=lambda _: None)
            driver.get(url)
            _wait(driver).until(lambda d: d.find_element("id", "count").text == "12")
            assert int(driver.find_element("id", "switches").text) >= 1
            driver.save_screenshot(str(OUT / "dashboard-adaptive.png"))
    finally:
        driver.quit()
    assert (OUT / "dashboard.png").stat().st_size > 10_000


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def _next_event(stream) -> dict:
    while True:
        line = stream.readline().decode()
        if line.startswith("data: "):
            return json.loads(line[len("data: "):])


def _chromium(profile_dir: Path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not browser or not Path(driver_path).exists():
        pytest.skip("no chromium and chromedriver installed (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={profile_dir / 'chromium'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _wait(driver):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20)
