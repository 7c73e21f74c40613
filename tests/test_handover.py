"""Hand-over: SplitClient moves a tier's stage to other servers while requests go on, make
before break; every request is answered once, with the whole model's answer, and none falls
back to the device. A server that vanishes with requests in flight, or a new server that
cannot be reached, costs nothing. Real tier servers; slow links from a ShapingProxy.
benchmarks/handover.py runs 50 hand-overs behind emulated links and reports the latency
around them."""
import asyncio
import contextlib

import pytest

from tiercut.link.shaper import ShapingProxy
from tiercut.runtime.client import SplitClient
from tiercut.runtime.handover import HandOverError
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import StagePlan

from assignments import assert_same
from test_runtime import SKIP, SKIPPY, TIERS, whole

pytestmark = pytest.mark.slow
EDGE_ONLY = StagePlan.from_assignment(SKIPPY, {n: min(s, 1) for n, s in SKIP.items()},
                                      TIERS[:2])
CHAIN = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)


def test_hand_overs_mid_stream_lose_and_repeat_nothing():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as a, serve_in_thread([SKIPPY]) as b, \
            SplitClient(EDGE_ONLY, [a.endpoint]) as client:

        async def stream():
            done = []

            async def one():
                done.append(await client.ainfer(*x))

            moves = []
            for i in range(6):  # requests in flight at every switch
                tasks = [asyncio.create_task(one()) for _ in range(8)]
                await asyncio.sleep(0)
                moves.append(await client.ahand_over(b.endpoint if i % 2 == 0 else a.endpoint))
                tasks += [asyncio.create_task(one()) for _ in range(4)]
                await asyncio.gather(*tasks)
            await client.aclose()
            return done, moves

        done, moves = asyncio.run(stream())
        ids = [m.request_id for _, m in done]
        assert len(done) == 72 and len(set(ids)) == 72
        for out, m in done:
            assert_same(out, expected)
            assert not m.fallback and m.endpoint in (a.endpoint, b.endpoint)
        assert {m.endpoint for _, m in done} == {a.endpoint, b.endpoint}
        assert [h.new for h in moves] == [(b.endpoint,), (a.endpoint,)] * 3
        assert all(h.drained and h.warmed == 1 for h in moves), moves
        assert sum(h.in_flight for h in moves) > 0, moves  # some were waiting at a switch
        assert client.hosts == ((a.endpoint,),)  # the last move's, old hosts dropped
        assert client.infer(*x)[1].endpoint == a.endpoint


def test_requests_in_flight_on_a_vanishing_server_are_retried_on_the_new_one():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as old, serve_in_thread([SKIPPY]) as new, \
            contextlib.ExitStack() as stack:
        host, port = old.endpoint.rsplit(":", 1)
        proxy = stack.enter_context(ShapingProxy.in_thread(to=(host, int(port))))
        via = f"127.0.0.1:{proxy.port}"
        with SplitClient(EDGE_ONLY, [via], retry_after_s=30) as client:
            client.infer(*x)  # prepared, and a request to warm the new server with

            async def scenario():
                proxy.delay_s = 0.5  # the old link slows: requests are under way on it
                tasks = [asyncio.create_task(client.ainfer(*x)) for _ in range(4)]
                await asyncio.sleep(0.1)
                assert len(client.in_flight_on([via])) == 4
                move = asyncio.create_task(client.ahand_over(new.endpoint))
                while client.hosts[0][0] != new.endpoint:  # switched, now draining
                    await asyncio.sleep(0.005)
                stack.close()  # the old server's link goes, with 4 requests on it
                results = await asyncio.gather(*tasks)
                await client.aclose()
                return results, await move

            results, move = asyncio.run(scenario())
            for out, m in results:
                assert_same(out, expected)
                assert not m.fallback and m.endpoint == new.endpoint and m.failovers >= 1
            assert move.in_flight == 4 and move.drained
            assert client.hosts == ((new.endpoint,),)


def test_an_unreachable_new_server_leaves_the_client_where_it_was():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as a, SplitClient(EDGE_ONLY, [a.endpoint]) as client:
        client.infer(*x)
        with pytest.raises(HandOverError, match=r"127\.0\.0\.1:1.*stays on \['" + a.endpoint):
            client.hand_over("127.0.0.1:1")
        assert client.hosts == ((a.endpoint,),)
        out, m = client.infer(*x)
        assert_same(out, expected)
        assert m.endpoint == a.endpoint and not m.fallback
        # one of two new hosts down: the move goes to the one that answers, and says so
        with serve_in_thread([SKIPPY]) as b:
            move = client.hand_over(["127.0.0.1:1", b.endpoint])
            assert move.new == (b.endpoint,) and move.skipped == ("127.0.0.1:1",)
            assert "127.0.0.1:1" in move.reasons[0]
            assert client.infer(*x)[1].endpoint == b.endpoint


def test_the_cloud_tier_hands_over_too():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as edge, serve_in_thread([SKIPPY]) as c1, \
            serve_in_thread([SKIPPY]) as c2, \
            SplitClient(CHAIN, [edge.endpoint, c1.endpoint]) as client:
        assert [s.server for s in client.infer(*x)[1].servers] == [edge.endpoint, c1.endpoint]
        move = client.hand_over(c2.endpoint, tier="cloud")
        assert move.tier == "cloud" and move.warmed == 0
        out, m = client.infer(*x)
        assert_same(out, expected)
        assert [s.server for s in m.servers] == [edge.endpoint, c2.endpoint]
        assert client.hosts == ((edge.endpoint,), (c2.endpoint,))


@pytest.mark.parametrize("kwargs, match", [
    ({"hosts": []}, "at least one host:port"),
    ({"hosts": ["nocolon"]}, "at least one host:port"),
    ({"hosts": ["a:1", "a:1"]}, "name a host twice"),
    ({"hosts": "a:1", "tier": "fog"}, "tier 'fog' is not one of .*'edge'"),
    ({"hosts": "a:1", "warmups": -1}, "warmups -1"),
    ({"hosts": "a:1", "drain_timeout_s": 0}, "drain_timeout_s 0"),
])
def test_bad_hand_over_arguments_are_named(kwargs, match):
    with SplitClient(EDGE_ONLY, ["127.0.0.1:1"]) as client:
        with pytest.raises(ValueError, match=match):
            client.hand_over(**kwargs)


def test_redundant_copies_take_the_first_answer():
    """k = 2 of 2 hosts: one behind a slow link, the other answers; one down, the other
    answers; a backup copy (redundant_after_s) is sent only when the first is late."""
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as slow, serve_in_thread([SKIPPY]) as fast, \
            contextlib.ExitStack() as stack:
        host, port = slow.endpoint.rsplit(":", 1)
        proxy = stack.enter_context(ShapingProxy.in_thread(to=(host, int(port))))
        via = f"127.0.0.1:{proxy.port}"
        with SplitClient(EDGE_ONLY, [[via, fast.endpoint]], redundant=2) as client:
            client.prepare()
            proxy.delay_s = 1.0
            for _ in range(4):
                out, m = client.infer(*x)
                assert_same(out, expected)
                assert m.endpoint == fast.endpoint and not m.fallback and m.total_s < 0.9
        with SplitClient(EDGE_ONLY, [["127.0.0.1:1", fast.endpoint]], redundant=2,
                         redundant_after_s=0.05) as client:
            for _ in range(3):
                out, m = client.infer(*x)
                assert_same(out, expected)
                assert m.endpoint == fast.endpoint and not m.fallback


@pytest.mark.parametrize("kwargs, match", [
    ({"redundant": 0}, "redundant 0 must be a whole number of copies >= 1"),
    ({"redundant": 1.5}, "redundant 1.5"),
    ({"redundant_after_s": -1}, "redundant_after_s -1 must be a number of seconds >= 0"),
    ({"redundant_after_s": float("inf")}, "redundant_after_s inf"),
])
def test_bad_redundancy_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SplitClient(EDGE_ONLY, ["127.0.0.1:1"], **kwargs)
