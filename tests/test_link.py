"""Emulated links: the shaping proxy, bandwidth traces, the `link` command, namespace links.

Timing checks here are lower bounds only (a slow machine cannot break them); how close the
rates come to their settings is measured by benchmarks/link_rate.py.
"""
import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tiercut.cli.link import link_cmd
from tiercut.link import (BandwidthTrace, BandwidthTraceError, LinkError, NamespaceLink,
                          ShapingProxy, TraceFileError, check_delay, check_rate, load_trace,
                          parse_address)
from tiercut.link import netns

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
if not TRACES.is_dir():
    TRACES = Path("/work/shared/traces")
PENSIEVE = TRACES / "pensieve-cooked" / "src"
IRISH = TRACES / "irish-5g" / "5G-production-dataset" / "Download"
needs_traces = pytest.mark.skipif(not PENSIEVE.is_dir() or not IRISH.is_dir(),
                                  reason=f"the shared traces are not at {TRACES}")


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo_server():
    """Echoes what it reads; half-closes after the client does."""
    async def handle(reader, writer):
        while data := await reader.read(50_000):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def send_and_read(port, payload, pieces=7):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async def send():
        step = len(payload) // pieces + 1
        for i in range(0, len(payload), step):
            writer.write(payload[i:i + step])
            await writer.drain()
        writer.write_eof()   # half-close: the answer still has to come back
    sender = asyncio.ensure_future(send())
    got = await reader.read()
    await sender
    writer.close()
    return got


# the proxy relays bytes intact ----------------------------------------------------------------
def test_concurrent_connections_relay_random_bytes_both_ways_with_half_close():
    async def main():
        server = await echo_server()
        to = server.sockets[0].getsockname()[:2]
        rng = random.Random(1)
        payloads = [rng.randbytes(rng.randrange(0, 300_000)) for _ in range(6)] + [b"", b"x"]
        async with ShapingProxy(to=to, rate_bps="200mbit", delay_s="5ms") as proxy:
            got = await asyncio.gather(*(send_and_read(proxy.port, p) for p in payloads))
            stats = proxy.stats
        server.close()
        return payloads, got, stats
    payloads, got, stats = run(main())
    assert got == payloads
    assert stats.connections == len(payloads) and stats.errors == []
    assert stats.bytes_up == stats.bytes_down == sum(map(len, payloads))


def test_server_closing_first_reaches_the_client_after_all_its_data():
    greeting = random.Random(2).randbytes(200_000)

    async def main():
        async def talk_and_leave(reader, writer):
            writer.write(greeting)
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(talk_and_leave, "127.0.0.1", 0)
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2], delay_s="10ms") as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            got = await reader.read()           # ends at the server's close
            writer.close()
            await asyncio.sleep(0.1)
            open_tasks = len(proxy._tasks)
        server.close()
        return got, open_tasks
    got, open_tasks = run(main())
    assert got == greeting
    assert open_tasks == 0        # the connection's tasks all ended


def test_a_reset_on_one_side_ends_the_other_and_stop_closes_open_connections():
    async def main():
        ended = asyncio.get_running_loop().create_future()
        async def hold(reader, writer):
            try:
                while await reader.read(65536):
                    pass
                ended.set_result("eof")
            except ConnectionResetError:
                ended.set_result("reset")
        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        proxy = ShapingProxy(to=server.sockets[0].getsockname()[:2], delay_s="5ms")
        async with proxy:
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"data")
            await asyncio.sleep(0.05)
            writer.transport.abort()                     # the client resets its connection
            how = await asyncio.wait_for(ended, 5)
            reader2, writer2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            await asyncio.sleep(0.05)
        # stopped with a connection open: the client sees it closed, nothing is left running
        left = await asyncio.wait_for(reader2.read(), 5)
        writer2.close()
        server.close()
        return how, left, proxy._tasks
    how, left, tasks = run(main())
    assert how in ("eof", "reset") and left == b"" and not tasks


def test_unreachable_destination_closes_the_client_connection():
    async def main():
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()                       # nobody listens there now
        async with ShapingProxy(to=("127.0.0.1", port)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            got = await reader.read()
            writer.close()
            return got, proxy.stats.errors
    got, errors = run(main())
    assert got == b"" and "connect" in errors[0]


def test_in_thread_proxy_serves_blocking_sockets_and_takes_rate_changes():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve():
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        payload = os.urandom(256 * 1024)
        with ShapingProxy.in_thread(to=listener.getsockname(), delay_s="1ms") as proxy:
            assert proxy.address[1] == proxy.port > 0
            proxy.set_rate("8mbit")                     # from this thread, while it runs
            with socket.create_connection(proxy.address, timeout=10) as conn:
                t0 = time.perf_counter()
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)
                got = bytearray()
                while data := conn.recv(65536):
                    got += data
                seconds = time.perf_counter() - t0
        server.join(5)
    assert got == payload
    assert seconds >= 0.2       # 256 KiB at 8 Mbit/s is 0.26 s each way


# timing lower bounds ----------------------------------------------------------------------------
def test_256k_at_8mbit_takes_at_least_02_s():
    async def main():
        done = asyncio.get_running_loop().create_future()
        async def sink(reader, writer):
            done.set_result(len(await reader.read()))
            writer.close()
        server = await asyncio.start_server(sink, "127.0.0.1", 0)
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2], rate_bps="8mbit") as p:
            _, writer = await asyncio.open_connection("127.0.0.1", p.port)
            t0 = time.perf_counter()
            writer.write(os.urandom(256 * 1024))
            writer.write_eof()
            n = await done
            seconds = time.perf_counter() - t0
            writer.close()
        server.close()
        return n, seconds
    n, seconds = run(main())
    assert n == 256 * 1024 and seconds >= 0.2


def test_50ms_one_way_delay_makes_a_round_trip_at_least_100ms():
    async def main():
        server = await echo_server()
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2], delay_s="50ms") as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            rtts = []
            for _ in range(3):
                t0 = time.perf_counter()
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                rtts.append(time.perf_counter() - t0)
            writer.close()
        server.close()
        return rtts
    rtts = run(main())
    assert min(rtts) >= 0.1


def test_delays_overlap_instead_of_adding_up():
    """100 small writes through a 50 ms link arrive in about 50 ms, not 100 x 50 ms."""
    async def main():
        done = asyncio.get_running_loop().create_future()
        async def sink(reader, writer):
            done.set_result(await reader.read())
            writer.close()
        server = await asyncio.start_server(sink, "127.0.0.1", 0)
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2], delay_s="50ms") as p:
            _, writer = await asyncio.open_connection("127.0.0.1", p.port)
            t0 = time.perf_counter()
            for i in range(100):
                writer.write(b"%03d" % i)
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write_eof()
            got = await done
            seconds = time.perf_counter() - t0
            writer.close()
        server.close()
        return got, seconds
    got, seconds = run(main())
    assert got == b"".join(b"%03d" % i for i in range(100))
    assert 0.05 <= seconds < 2.0


def test_set_rate_takes_effect_mid_run():
    async def main():
        server = await echo_server()
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2]) as p:
            fast = await send_and_read(p.port, os.urandom(128 * 1024))
            p.set_rate("2mbit")
            assert p.rate_bps == 2e6
            t0 = time.perf_counter()
            slow = await send_and_read(p.port, os.urandom(128 * 1024))
            seconds = time.perf_counter() - t0
            p.set_rate(None)
            assert p.rate_bps is None
        server.close()
        return len(fast), len(slow), seconds
    fast, slow, seconds = run(main())
    assert fast == slow == 128 * 1024
    assert seconds >= 0.4        # 128 KiB at 2 Mbit/s: 0.52 s each way, overlapped


def test_trace_replay_follows_the_trace():
    # 1 Gbit/s for 0.2 s, then 1 Mbit/s: a transfer after 0.3 s runs at 1 Mbit/s.
    trace = BandwidthTrace((0.0, 0.2, 10.0), (1e9, 0.5e6, 0.5e6), "step")
    async def main():
        server = await echo_server()
        async with ShapingProxy(to=server.sockets[0].getsockname()[:2], trace=trace,
                                trace_scale=2) as p:
            assert p.trace.rates_bps == (2e9, 1e6, 1e6)
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            got = await send_and_read(p.port, b"y" * 65536)
            seconds = time.perf_counter() - t0
        server.close()
        return got, seconds
    got, seconds = run(main())
    assert got == b"y" * 65536 and seconds >= 0.4   # 64 KiB at 1 Mbit/s: 0.52 s


# bandwidth traces -------------------------------------------------------------------------------
def test_trace_is_piecewise_constant_and_loops():
    tr = BandwidthTrace((0.0, 1.0, 3.0), (1e6, 4e6, 2e6), "t")
    assert tr.duration_s == 5.0          # the last sample holds as long as the gap before it
    assert [tr.rate_at(t) for t in (0, 0.99, 1.0, 2.5, 3.0, 4.9, 5.0, 6.5)] == \
        [1e6, 1e6, 4e6, 4e6, 2e6, 2e6, 1e6, 4e6]
    assert tr.mean_bps == pytest.approx((1 + 8 + 4) / 5 * 1e6)
    assert tr.sample_mean_bps == pytest.approx(7e6 / 3)
    assert tr.mean_over(0.5, 1.5) == pytest.approx(2.5e6)
    assert tr.mean_over(4.0, 6.0) == pytest.approx(1.5e6)        # across the loop
    assert tr.scaled(0.5).rates_bps == (0.5e6, 2e6, 1e6)
    assert BandwidthTrace.from_samples([10, 11], [1, 2]).times_s == (0.0, 1.0)


@pytest.mark.parametrize("times, rates, match", [
    ((), (), "no samples"),
    ((0.0, 1.0), (1.0,), "2 times but 1 rates"),
    ((0.0, 2.0, 1.0), (1, 1, 1), "sample 2 time 1.0"),
    ((0.0,), (-1.0,), "rate -1.0"),
    ((1.0,), (1.0,), "must start at time 0"),
])
def test_bad_traces_are_refused(times, rates, match):
    with pytest.raises(BandwidthTraceError, match=match):
        BandwidthTrace(times, rates)


@needs_traces
def test_pensieve_means_match_the_readme():
    # README: FCC 0.19 ... 2.93; Norway tram_26 0.60 ... bus_16 4.59 (plain means of samples).
    fcc = sorted(load_trace(p).mean_bps / 1e6 for p in (PENSIEVE / "cooked_traces").iterdir())
    readme_fcc = [0.19, 0.32, 0.59, 0.89, 1.05, 1.39, 1.62, 1.98, 2.62, 2.93]
    assert fcc == pytest.approx(readme_fcc, rel=0.02, abs=0.005)   # the README rounds to 0.01
    readme_norway = {"tram_26": 0.60, "metro_6": 0.79, "train_3": 0.99, "ferry_17": 1.29,
                     "metro_1": 1.51, "bus_11": 1.94, "car_4": 2.03, "ferry_6": 2.45,
                     "bus_1": 3.34, "bus_16": 4.59}
    for name, mbit in readme_norway.items():
        trace = load_trace(PENSIEVE / "cooked_test_traces" / f"norway_{name}")
        assert trace.sample_mean_bps / 1e6 == pytest.approx(mbit, rel=0.01), name
        # Norway samples are irregular and sparse when slow: over time the mean is lower.
        assert trace.mean_bps <= trace.sample_mean_bps * 1.001
    fcc_trace = load_trace(next((PENSIEVE / "cooked_traces").iterdir()))
    assert fcc_trace.mean_bps == pytest.approx(fcc_trace.sample_mean_bps, rel=0.01)


@needs_traces
def test_irish_download_logs_parse_in_both_directions():
    means = sorted(load_trace(p).sample_mean_bps / 1e6 for p in IRISH.rglob("*.csv"))
    assert means == pytest.approx([2.9, 7.1, 9.8, 24.5, 40.0, 120.8, 121.0], rel=0.01)
    up = load_trace(next(IRISH.rglob("*.csv")), direction="up")
    assert 0 < up.mean_bps < 10e6 and up.duration_s > 100


def test_gnettrack_rows_in_one_second_are_spread_and_missing_values_skipped(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("Timestamp,NetworkMode,DL_bitrate,UL_bitrate\n"
                 "2019.12.14_10.16.30,5G,-,1\n"
                 "2019.12.14_10.16.31,5G,1000,1\n"
                 "2019.12.14_10.16.32,5G,2000,2\n"
                 "2019.12.14_10.16.32,5G,-,2\n"
                 "2019.12.14_10.16.32,5G,4000,2\n"
                 "2019.12.14_10.16.34,LTE,3000,3\n")
    tr = load_trace(f)
    assert tr.times_s == (0.0, 1.0, 1.5, 3.0)
    assert tr.rates_bps == (1e6, 2e6, 4e6, 3e6)
    assert load_trace(f, direction="up").rates_bps[0] == 1e3


@pytest.mark.parametrize("text, match", [
    ("0.0\t1.5\r\n1.0\t2.5\r\n2.0\tabc\r\n", r"line 3: '2.0\\tabc' is not two numbers"),
    ("0.0\t1.5\n1.0\t-2\n", r"line 2: rate '-2' Mbit/s must be .* >= 0"),
    ("0.0\t1.5\n1.0\t2.0\t3.0\n", "line 2: expected"),
    ("5.0\t1.5\n1.0\t2.0\n", "line 2: time '1.0' s goes back"),
    ("\n\n", "the file is empty"),
    ("Timestamp,DL_bitrate,UL_bitrate\n2019.12.14_10.16.30,12,1\nyesterday,3,1\n",
     "line 3: Timestamp 'yesterday'"),
    ("Timestamp,DL_bitrate,UL_bitrate\n2019.12.14_10.16.30,fast,1\n", "line 2: DL_bitrate 'fast'"),
    ("Timestamp,Speed\n2019.12.14_10.16.30,1\n", "line 1: the CSV header has no 'DL_bitrate'"),
    ("Timestamp,DL_bitrate\n2019.12.14_10.16.30,-\n", "no usable samples"),
])
def test_malformed_trace_files_name_file_line_and_value(tmp_path, text, match):
    f = tmp_path / "bad_trace"
    f.write_text(text, newline="")
    with pytest.raises(TraceFileError, match=match) as info:
        load_trace(f)
    assert "bad_trace" in str(info.value) and "pensieve-cooked" in str(info.value)


def test_missing_trace_file(tmp_path):
    with pytest.raises(TraceFileError, match="cannot read trace file .*nope"):
        load_trace(tmp_path / "nope")


# bad settings -----------------------------------------------------------------------------------
def test_rates_delays_and_addresses_are_checked():
    assert check_rate("10mbit") == 1e7 and check_rate(0) is None and check_rate(None) is None
    assert check_delay("20ms") == pytest.approx(0.02) and check_delay(0) == 0
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("[::1]:80") == ("::1", 80)
    with pytest.raises(LinkError, match="'fast' is not a rate like 10mbit"):
        check_rate("fast")
    with pytest.raises(LinkError, match="rate -5 must be .* >= 0"):
        check_rate(-5)
    with pytest.raises(LinkError, match="rate inf"):
        check_rate(float("inf"))
    with pytest.raises(LinkError, match="'soon' is not a duration"):
        check_delay("soon")
    with pytest.raises(LinkError, match="delay -0.1 must be"):
        check_delay(-0.1)
    for bad in ("localhost", "host:port", "1.2.3.4:70000", ""):
        with pytest.raises(LinkError, match="is not HOST:PORT"):
            parse_address(bad)
    with pytest.raises(LinkError, match="needs a destination"):
        ShapingProxy()
    with pytest.raises(LinkError, match="port 99999"):
        ShapingProxy(to=("127.0.0.1", 99999))
    with pytest.raises(LinkError, match="not started"):
        ShapingProxy(to=("127.0.0.1", 1)).address


# the `link` command -----------------------------------------------------------------------------
def _app():
    app = typer.Typer()
    app.command("link")(link_cmd)
    app.command("other")(lambda: None)   # two commands: `link` is then a subcommand, as in tiercut
    return app


@pytest.mark.parametrize("args, match", [
    (["--to", "127.0.0.1:1", "--rate", "fast"], "'fast' is not a rate"),
    (["--to", "nowhere"], "'nowhere' is not HOST:PORT"),
    (["--to", "127.0.0.1:1", "--listen", "1.2.3.4"], "'1.2.3.4' is not HOST:PORT"),
    (["--to", "127.0.0.1:1", "--delay", "-3ms"], "delay '-3ms' must be"),
    (["--to", "127.0.0.1:1", "--trace", "/no/such/trace"], "cannot read trace file /no/such/trace"),
    (["--to", "127.0.0.1:1", "--duration", "0"], "--duration must be > 0"),
])
def test_link_command_errors_exit_2_with_a_message(args, match):
    result = CliRunner().invoke(_app(), ["link", *args])
    assert result.exit_code == 2
    assert re.search(match, result.output), result.output


def test_link_command_relays_until_its_duration(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(conn.recv(100).upper())
        threading.Thread(target=serve, daemon=True).start()
        code = "import typer; from tiercut.cli.link import link_cmd; typer.run(link_cmd)"
        host, port = listener.getsockname()
        proc = subprocess.Popen([sys.executable, "-c", code, "--to", f"{host}:{port}",
                                 "--rate", "10mbit", "--delay", "5ms", "--duration", "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("listening on 127.0.0.1:"), (line, proc.stderr.read())
            address = line.split()[2].rstrip(",")
            with socket.create_connection(parse_address(address), timeout=10) as conn:
                conn.sendall(b"hello")
                assert conn.recv(100) == b"HELLO"
        finally:
            proc.kill()
            proc.communicate(timeout=10)


# namespace links --------------------------------------------------------------------------------
SINK = r"""
import socket, sys, time
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
conn, _ = s.accept()
n = 0
while data := conn.recv(1 << 16):
    n += len(data)
conn.sendall(str(n).encode())
conn.close()
"""
SOURCE = r"""
import os, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
t0 = time.perf_counter()
conn.sendall(os.urandom(int(sys.argv[3])))
conn.shutdown(socket.SHUT_WR)
n = int(conn.recv(100))
print(n, time.perf_counter() - t0)
"""


def _our_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"tiercut-{os.getpid()}-" in line]


@pytest.mark.slow
@pytest.mark.skipif(not netns.available(), reason=f"namespace links: {netns.why_unavailable()}")
def test_namespace_link_shapes_a_tcp_transfer_and_cleans_up():
    with NamespaceLink("10mbit", "20ms") as link:
        assert len(_our_namespaces()) == 2
        sink = link.python(link.server_ns, SINK, "5601", stdout=subprocess.PIPE, text=True)
        assert sink.stdout.readline().strip() == "ready"
        host, port = link.front(5601)
        result = link.run(link.client_ns, [sys.executable, "-c", SOURCE, host, str(port),
                                           str(1 << 20)], timeout=60)
        assert result.returncode == 0, result.stderr
        n, seconds = result.stdout.split()
    assert int(n) == 1 << 20 and float(seconds) >= 0.8
    assert _our_namespaces() == []


@pytest.mark.skipif(not netns.available(), reason=f"namespace links: {netns.why_unavailable()}")
def test_namespace_link_is_torn_down_when_the_body_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with NamespaceLink("10mbit") as link:
            sleeper = link.popen(link.client_ns, ["sleep", "30"])
            raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert _our_namespaces() == []
