"""LAN discovery with real parts: tier servers spawned on loopback announce themselves with
zeroconf, the lister browses with zeroconf on 127.0.0.1, probes them over gRPC and writes a
cluster file that loads and plans. No mocks: multicast on the loopback interface carries the
mDNS packets (checked first; the tests skip saying why when it cannot)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import grpc
import pytest
from typer.testing import CliRunner

from tiercut.cli import app
from tiercut.discover import SERVICE, LinkError, browse, probe_peer
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime.launch import serve_in_thread, spawn

LO = ["127.0.0.1"]
TAG = uuid.uuid4().hex[:6]  # this run's node names: other runs on the machine do not collide
runner = CliRunner()


def _mdns_on_loopback() -> bool:
    """Whether a service registered on 127.0.0.1 is browsed back within 3 s."""
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    zc = Zeroconf(interfaces=LO, ip_version=IPVersion.V4Only)
    try:
        name = f"selfcheck_{TAG}.{SERVICE}"
        zc.register_service(ServiceInfo(SERVICE, name, port=9, parsed_addresses=LO,
                                        properties={"schema": "0"}))
        records, warnings = browse(2.0, LO)
        return any(name in w for w in warnings)  # schema 0: skipped, with a warning naming it
    finally:
        zc.close()


@pytest.fixture(scope="module")
def multicast():
    """Multicast on lo, turned on for the tests when it is off and we are root (and restored)."""
    flags = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True)
    turned_on = False
    if "MULTICAST" not in flags.stdout and os.geteuid() == 0 and not _mdns_on_loopback():
        turned_on = subprocess.run(["ip", "link", "set", "lo", "multicast", "on"]).returncode == 0
    if not _mdns_on_loopback():
        pytest.skip("mDNS on 127.0.0.1 does not come back here (no multicast on lo, and not "
                    "root to turn it on): discovery cannot be tested on this machine")
    yield
    if turned_on:
        subprocess.run(["ip", "link", "set", "lo", "multicast", "off"])


def _announced(proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not any("announced" in line for line in proc.log):
        if proc.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not announce: {' | '.join(proc.log[-10:])}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def nodes(multicast):
    """Three announced tier servers on loopback, named n1..n3 and this run's tag."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:  # each start imports torch: a few seconds, at once
        procs = list(pool.map(lambda n: spawn(["digits_cnn"], extra_args=[
            "--announce", "--node-name", f"{n}_{TAG}"]), ("n1", "n2", "n3")))
    try:
        for p in procs:
            _announced(p)
        yield {f"{n}_{TAG}": p for n, p in zip(("n1", "n2", "n3"), procs)}
    finally:
        for p in procs:
            p.terminate()


@pytest.fixture
def foreign():
    """Announcers that are not (working) tiercut nodes: a well-formed record whose port
    nothing listens on, a tiercut record with a bad port, and another program's record."""
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    good = {"schema": "1", "models": "digits_cnn", "cpus": "1", "memory": "1000000",
            "version": "x"}
    dead_port = socket.socket()
    dead_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = dead_port.getsockname()[1]
    zc = Zeroconf(interfaces=LO, ip_version=IPVersion.V4Only)
    for name, props in ((f"dead_{TAG}", {**good, "name": f"dead_{TAG}", "port": str(port)}),
                        (f"badport_{TAG}", {**good, "name": f"badport_{TAG}", "port": "http"}),
                        (f"printer_{TAG}", {"rp": "queue"})):
        zc.register_service(ServiceInfo(SERVICE, f"{name}.{SERVICE}", port=port,
                                        parsed_addresses=LO, properties=props))
    yield port
    zc.close()
    dead_port.close()


def _ours(names):
    return sorted(n for n in names if n.endswith(TAG))


def test_announced_servers_are_browsed_with_their_record(nodes):
    records, _ = browse(2.0, LO)
    found = {r.name: r for r in records if r.name.endswith(TAG)}
    assert sorted(found) == sorted(nodes)
    for name, proc in nodes.items():
        r = found[name]
        assert r.endpoint == proc.endpoint and r.models == ("digits_cnn",)
        assert r.cpus >= 1 and r.memory > 0 and r.version


def test_probe_peer_dials_only_known_addresses_and_refuses_bad_sizes(nodes):
    a, b, _ = nodes.values()
    # b is known to a: a discovered it over mDNS
    link = probe_peer(a.endpoint, b.endpoint, sizes=(0, 1 << 20), repeat=2)
    assert link.rate_bps > 0 and link.delay_s >= 0
    with grpc.insecure_channel(a.endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        for request, says in (
                (pb.ProbePeerRequest(address="10.9.9.9:50051", sizes=[0, 1000]),
                 "'10.9.9.9:50051' is not a peer this server knows"),
                (pb.ProbePeerRequest(address=b.endpoint, sizes=[-5, 1000]),
                 "size -5 bytes; each size must be 0 to"),
                (pb.ProbePeerRequest(address=b.endpoint, sizes=[1 << 30]),
                 f"size {1 << 30} bytes"),
                (pb.ProbePeerRequest(address=b.endpoint, sizes=list(range(9))), "9 sizes"),
                (pb.ProbePeerRequest(address=b.endpoint, sizes=[0, 1], repeat=50),
                 "repeat 50")):
            with pytest.raises(grpc.RpcError) as err:
                stub.ProbePeer(request, timeout=10)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert says in err.value.details()
        health = stub.Health(pb.HealthRequest(), timeout=5)  # still serving after all that
        assert health.status == pb.HealthReply.SERVING
    assert probe_peer(a.endpoint, b.endpoint, sizes=(0, 1000), repeat=1).samples == 2


def test_probe_peer_follows_the_peers_allowlist_without_announcing(nodes):
    a, b, _ = nodes.values()
    with serve_in_thread(["digits_cnn"], peers=[a.endpoint]) as server:
        assert probe_peer(server.endpoint, a.endpoint, (0, 1000), 1).rate_bps > 0
        with pytest.raises(LinkError, match=f"{b.endpoint}.*not a peer this server knows"):
            probe_peer(server.endpoint, b.endpoint, (0, 1000), 1)


def test_discover_lists_nodes_writes_a_cluster_that_plans(nodes, foreign, tmp_path):
    out = tmp_path / "cluster.yaml"
    result = runner.invoke(app, ["cluster", "discover", "--wait", "2s", "--on", "127.0.0.1",
                                 "--model", "digits_cnn", "--write", str(out)],
                           env={"COLUMNS": "200"})
    text = " ".join(result.output.split())  # as one line: rich wraps long warnings
    assert result.exit_code == 0, result.output
    assert f"skipped badport_{TAG}._tiercut._tcp.local.: not a tiercut node's record (TXT " \
           "port='http' is not a TCP port" in text
    assert f"skipped printer_{TAG}._tiercut._tcp.local.: not a tiercut node's record" in text
    assert f"unreachable at 127.0.0.1:{foreign}" in text  # listed, not a traceback
    assert "Traceback" not in text
    for name in nodes:
        assert name in text

    from tiercut.cluster import load_cluster, plan_cluster
    from tiercut.measure.profile import Profile

    cluster = load_cluster(out)
    names = [n.name for n in cluster.nodes]
    assert "here" in names and f"dead_{TAG}" not in names
    assert set(nodes) <= set(names)
    ref = Profile.load(tmp_path / "cluster-reference.json")
    assert plan_cluster(cluster, ref, "swarm").throughput_fps > 0
    planned = runner.invoke(app, ["cluster", "plan", str(out), "--reference",
                                  str(tmp_path / "cluster-reference.json"), "--json"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.output)["throughput_fps"] > 0


def test_discover_json_gives_the_link_matrix(nodes):
    result = runner.invoke(app, ["cluster", "discover", "--wait", "3s", "--on", "127.0.0.1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    ours = _ours(n["name"] for n in data["nodes"] if n["problem"] is None)
    assert ours == sorted(nodes)
    pairs = {(link["from"], link["to"]) for link in data["links"] if "rate_bps" in link}
    assert {("here", n) for n in ours} <= pairs
    assert len([p for p in pairs if set(p) <= set(ours)]) == 3  # every two nodes, once


def test_discover_says_so_when_nothing_announces():
    """In a network namespace of its own (nothing else on its loopback) when root; else on
    this host's loopback, skipped if something else announces there."""
    from tiercut.link import netns

    cmd = [sys.executable, "-c", "from tiercut.cli import app; app()", "cluster", "discover",
           "--wait", "0.5s", "--on", "127.0.0.1"]
    if netns.why_unavailable() is None:
        ns = f"tcdisc{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                                  text=True, timeout=60)
        finally:
            subprocess.run(["ip", "netns", "delete", ns])
    else:
        if browse(1.0, LO)[0]:
            pytest.skip("other tiercut nodes announce on this loopback")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no tiercut node announced itself on 127.0.0.1 within 0.5s" in \
        " ".join(proc.stdout.split())


def test_bad_flags_are_refused_with_what_is_accepted():
    r = runner.invoke(app, ["cluster", "discover", "--write", "x.yaml"])
    assert r.exit_code == 2 and "--write needs --model" in r.output
    r = runner.invoke(app, ["cluster", "discover", "--wait", "90s"])
    assert r.exit_code == 2 and "give 0.1s to 60s" in " ".join(r.output.split())
