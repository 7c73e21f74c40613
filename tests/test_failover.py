"""Failover: several hosts per tier; a host killed, stopped, cut off or slow is passed over for
another host of the same tier, or the request finishes locally. Every request is accounted for.

Slow links come from a ShapingProxy (a real delay on the wire), not from a sleeping server.
benchmarks/load.py --faults runs the 20-fault campaign.
"""
import contextlib
import time

import pytest

from tiercut.runtime.client import SplitClient, tier_hosts
from tiercut.runtime.launch import serve_in_thread, spawn
from tiercut.link.shaper import ShapingProxy
from tiercut.runtime.stageplan import StagePlan

from assignments import assert_same
from test_runtime import SKIP, SKIPPY, TIERS, whole

pytestmark = pytest.mark.slow
EDGE_ONLY = StagePlan.from_assignment(SKIPPY, {n: min(s, 1) for n, s in SKIP.items()},
                                      TIERS[:2])
CHAIN = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)


def test_endpoint_forms():
    assert tier_hosts(["a:1", "b:2"], TIERS) == (("a:1",), ("b:2",))
    assert tier_hosts([["a:1", "a:2"], "b:2"], TIERS) == (("a:1", "a:2"), ("b:2",))
    assert tier_hosts({"cloud": ["b:2"], "edge": "a:1"}, TIERS) == (("a:1",), ("b:2",))
    with pytest.raises(ValueError, match="not among the plan's tiers"):
        tier_hosts({"edge": "a:1", "fog": "c:1", "cloud": "b:1"}, TIERS)
    with pytest.raises(ValueError, match="no host for tiers \\['cloud'\\]"):
        tier_hosts({"edge": "a:1"}, TIERS)
    with pytest.raises(ValueError, match="at least one host"):
        tier_hosts([[], "b:1"], TIERS)


def test_kill_9_mid_stream_fails_over_without_falling_back():
    _, x, expected = whole(SKIPPY)
    env = {"PYTHONPATH": "tests"}
    with spawn([SKIPPY], env=env) as first, spawn([SKIPPY], env=env) as second:
        with SplitClient(EDGE_ONLY, [[first.endpoint, second.endpoint]],
                         retry_after_s=30) as client:
            assert client.infer(*x)[1].endpoint == first.endpoint

            def progress(done, total):
                if done == 8:
                    first.kill()

            result = client.bench(x, requests=30, concurrency=4, progress=progress)
            assert len(result.measurements) == 30 and result.fallbacks == 0
            served = [m.endpoint for m in result.measurements]
            assert served.count(second.endpoint) >= 20 and "" not in served
            out, m = client.infer(*x)
            assert_same(out, expected)
            assert m.endpoint == second.endpoint and not m.fallback


def test_cut_off_and_slow_hosts_are_passed_over():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as behind, serve_in_thread([SKIPPY]) as spare, \
            contextlib.ExitStack() as stack:
        host, port = behind.endpoint.rsplit(":", 1)
        proxy = stack.enter_context(ShapingProxy.in_thread(to=(host, int(port))))
        via = f"127.0.0.1:{proxy.port}"
        with SplitClient(EDGE_ONLY, [[via, spare.endpoint]], host_timeout_s=0.5,
                         retry_after_s=0.0) as client:
            out, m = client.infer(*x)
            assert m.endpoint == via and not m.fallback
            proxy.delay_s = 2.0  # a slow link: the try times out, the spare answers
            out, m = client.infer(*x)
            assert_same(out, expected)
            assert m.endpoint == spare.endpoint and m.failovers == 1 and not m.fallback
            proxy.delay_s = 0.0
            stack.close()  # cut off: the proxy is gone
            for _ in range(3):
                out, m = client.infer(*x)
                assert_same(out, expected)
                assert m.endpoint == spare.endpoint and not m.fallback


def test_forwarding_tier_fails_over_to_another_host_of_the_next_tier():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as edge, serve_in_thread([SKIPPY]) as spare:
        cloud = serve_in_thread([SKIPPY])
        try:
            with SplitClient(CHAIN, [[edge.endpoint], [cloud.endpoint, spare.endpoint]]) as c:
                out, m = c.infer(*x)
                assert m.servers[1].server == cloud.endpoint
                cloud.stop(0)
                out, m = c.infer(*x)
                assert_same(out, expected)
                assert not m.fallback and m.servers[1].server == spare.endpoint
        finally:
            cloud.stop(0)


def test_every_host_down_finishes_locally_then_recovers():
    _, x, expected = whole(SKIPPY)
    a, b = serve_in_thread([SKIPPY]), serve_in_thread([SKIPPY])
    ports = (a.server.port, b.server.port)
    endpoints = [[a.endpoint, b.endpoint]]
    with SplitClient(EDGE_ONLY, endpoints, retry_after_s=0.0) as client:
        assert not client.infer(*x)[1].fallback
        a.stop(0)
        b.stop(0)
        out, m = client.infer(*x)
        assert_same(out, expected)
        assert m.fallback and m.failovers == 2 and m.endpoint == ""
        b = serve_in_thread([SKIPPY], port=ports[1])  # back, and it forgot the plan
        try:
            deadline = time.monotonic() + 10  # the channel reconnects within its backoff
            while time.monotonic() < deadline:
                out, m = client.infer(*x)
                assert_same(out, expected)
                if not m.fallback:
                    break
                time.sleep(0.05)
            assert not m.fallback and m.endpoint == b.endpoint
        finally:
            b.stop(0)
