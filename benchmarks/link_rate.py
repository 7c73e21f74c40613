"""Achieved rate of the emulated links against their settings.

Paths: "proxy" is the userspace ShapingProxy (run in a thread of this process; the sender and
the sink are separate processes on 127.0.0.1); "netns" is NamespaceLink (tbf on a veth pair
between two namespaces, delay by a delay-only proxy in the server namespace; root only,
skipped with a message otherwise). Every link has a 20 ms one-way delay.

Goodput = payload bits / (time the last byte reached the sink - time the sender started to
send the first byte - one-way delay). Both times are CLOCK_MONOTONIC, shared by all processes
(and namespaces) on the machine. Subtracting the delay leaves the time the link spent carrying
the bytes, which is what the rate setting governs. Goal: within 5% of the setting for >= 1 MiB.

Trace replay: 10 s of a Norway HSDPA trace through the proxy with a sender that always has
data; the bytes the sink gets in a 10 s window, against the trace's time-weighted mean over the
same (delay-shifted) window of the trace.

Usage: python benchmarks/link_rate.py [--quick]   (--quick: 10 and 100 Mbit/s, 1 MiB only)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tiercut.link import ShapingProxy, load_trace, netns
from tiercut.link.netns import NamespaceLink

DELAY_S = 0.02
MIB = 1 << 20
TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve-cooked" / "src"
TRACE = "cooked_test_traces/norway_bus_1"
TRACE_SCALE = 2.0
TRACE_WINDOW_S = 10.0

# Sink: for each connection, count bytes; report count, last-arrival time and a timeline.
SINK = r"""
import json, socket, sys, time
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print(json.dumps({"port": server.getsockname()[1]}), flush=True)
for _ in range(int(sys.argv[3])):
    conn, _ = server.accept()
    n, last, timeline, mark = 0, 0.0, [], 0.0
    while data := conn.recv(1 << 16):
        n += len(data)
        last = time.monotonic()
        if last - mark >= 0.01:
            timeline.append((last, n))
            mark = last
    timeline.append((last, n))
    conn.sendall(b"%d" % n)
    conn.close()
    print(json.dumps({"n": n, "last": last, "timeline": timeline}), flush=True)
"""
# Source: send SIZE bytes (or, with a negative SIZE, send for -SIZE seconds), then half-close.
SOURCE = r"""
import json, os, socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = socket.create_connection((host, port), timeout=120)
chunk = os.urandom(1 << 16)
payload = os.urandom(int(size)) if size > 0 else b""
first = time.monotonic()
if size > 0:
    conn.sendall(payload)
else:
    while time.monotonic() - first < -size:
        conn.sendall(chunk)
conn.shutdown(socket.SHUT_WR)
n = int(conn.recv(100))
print(json.dumps({"n": n, "first": first}), flush=True)
"""


def cases(quick: bool) -> list[tuple[float, int]]:
    if quick:
        return [(10e6, MIB), (100e6, MIB)]
    return [(1e6, MIB), (10e6, MIB), (10e6, 4 * MIB), (100e6, MIB), (100e6, 4 * MIB),
            (100e6, 16 * MIB)]


def local_sink() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SINK, "127.0.0.1", "0", "1"],
                            stdout=subprocess.PIPE, text=True)


def goodput(sent: dict, got: dict, size: int) -> float:
    assert got["n"] == sent["n"] == size, (sent["n"], got["n"], size)
    return size * 8 / (got["last"] - sent["first"] - DELAY_S)


def proxy_path(quick: bool) -> list[tuple]:
    rows = []
    for rate, size in cases(quick):
        # the proxy needs the sink's port, so start the sink first, then the proxy
        sink = local_sink()
        try:
            port = json.loads(sink.stdout.readline())["port"]
            with ShapingProxy.in_thread(to=("127.0.0.1", port), rate_bps=rate,
                                        delay_s=DELAY_S) as proxy:
                src = subprocess.Popen([sys.executable, "-c", SOURCE, *map(str, proxy.address),
                                        str(size)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
                out, err = src.communicate(timeout=180)
                if src.returncode != 0:
                    raise RuntimeError(f"the source failed: {err.strip()[-500:]}")
                got = json.loads(sink.stdout.readline())
            rows.append(("proxy", rate, size, goodput(json.loads(out), got, size)))
        finally:
            sink.kill()
            sink.communicate()
    return rows


def netns_path(quick: bool) -> list[tuple]:
    rows = []
    for rate, size in cases(quick):
        with NamespaceLink(rate, DELAY_S) as link:
            sink = link.python(link.server_ns, SINK, "0.0.0.0", "5601", "1",
                               stdout=subprocess.PIPE, text=True)
            json.loads(sink.stdout.readline())
            host, port = link.front(5601)
            result = link.run(link.client_ns, [sys.executable, "-c", SOURCE, host, str(port),
                                               str(size)], timeout=180)
            if result.returncode != 0:
                raise RuntimeError(f"the source failed: {result.stderr.strip()[-500:]}")
            got = json.loads(sink.stdout.readline())
            rows.append(("netns", rate, size, goodput(json.loads(result.stdout), got, size)))
    return rows


def trace_replay() -> str:
    path = TRACES / TRACE
    if not path.is_file():
        return f"trace replay: skipped, {path} is missing"
    trace = load_trace(path)
    sink = local_sink()
    try:
        port = json.loads(sink.stdout.readline())["port"]
        with ShapingProxy.in_thread(to=("127.0.0.1", port), delay_s=DELAY_S, trace=trace,
                                    trace_scale=TRACE_SCALE) as proxy:
            src = subprocess.run([sys.executable, "-c", SOURCE, *map(str, proxy.address),
                                  str(-(TRACE_WINDOW_S + 2.5))], capture_output=True,
                                 text=True, timeout=120)
            got = json.loads(sink.stdout.readline())
            started = proxy.started_at
    finally:
        sink.kill()
        sink.communicate()
    if src.returncode != 0:
        raise RuntimeError(f"the source failed: {src.stderr.strip()[-500:]}")
    timeline = got["timeline"]
    t_a = timeline[0][0] + 1.0                      # skip the first second (start-up)
    t_b = t_a + TRACE_WINDOW_S
    n_a = max(n for t, n in timeline if t <= t_a)
    n_b = max(n for t, n in timeline if t <= t_b)
    achieved = (n_b - n_a) * 8 / (t_b - t_a)
    scaled = proxy.trace
    expected = scaled.mean_over(t_a - DELAY_S - started, t_b - DELAY_S - started)
    return (f"trace replay ({TRACE} x{TRACE_SCALE:g}, proxy, {TRACE_WINDOW_S:g} s window): "
            f"achieved {achieved / 1e6:.3f} Mbit/s, trace mean over the window "
            f"{expected / 1e6:.3f} Mbit/s, error {100 * (achieved / expected - 1):+.1f}% "
            f"(whole-trace mean {scaled.mean_bps / 1e6:.3f} Mbit/s)")


def main() -> None:
    quick = "--quick" in sys.argv
    rows = proxy_path(quick)
    reason = netns.why_unavailable()
    if reason is None:
        rows += netns_path(quick)
    print(f"one-way delay {DELAY_S * 1e3:g} ms; goodput = bits / (last byte in - first byte "
          "out - delay)")
    print(f"{'path':6} {'setting':>10} {'size':>7} {'goodput':>12} {'error':>7}  within 5%")
    for path, rate, size, achieved in rows:
        err = 100 * (achieved / rate - 1)
        print(f"{path:6} {rate / 1e6:>6g} Mbit {size // MIB:>3} MiB {achieved / 1e6:>7.3f} Mbit "
              f"{err:>+6.1f}%  {'yes' if abs(err) <= 5 else 'NO'}")
    if reason is not None:
        print(f"netns: skipped, {reason}")
    print(trace_replay())


if __name__ == "__main__":
    main()
