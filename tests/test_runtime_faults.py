"""Faults: tiers that die, stop, restart or answer too late. No request may be lost."""
import threading
import time

import grpc
import pytest

from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime.backends import register_backend
from tiercut.runtime.client import RemoteError, SplitClient
from tiercut.runtime.launch import ServerThread, serve_in_thread, spawn
from tiercut.runtime.server import TierServer
from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph

from assignments import assert_same
from test_runtime import EARLY, SKIP, SKIPPY, TIERS, whole

pytestmark = pytest.mark.slow

SLOW_S = 0.4


class SlowStage:
    """A stage that takes SLOW_S longer: requests stay in flight long enough to catch."""

    def __init__(self, stage):
        self.stage, self.inputs, self.outputs = stage, stage.inputs, stage.outputs

    def run(self, env):
        time.sleep(SLOW_S)
        return self.stage.run(env)


register_backend("test-slow", lambda plan, lay, k: SlowStage(lay.stages[k]))


def test_last_tier_stopped_mid_run_falls_back(tmp_path):
    _, x, expected = whole(SKIPPY)
    edge, cloud = serve_in_thread([SKIPPY]), serve_in_thread([SKIPPY])
    try:
        plan = StagePlan.from_assignment(SKIPPY, EARLY, TIERS)
        with SplitClient(plan, [edge.endpoint, cloud.endpoint]) as client:
            out, m = client.infer(*x)
            assert not m.fallback
            cloud.stop(0)
            for _ in range(2):  # the edge reports the cloud, then the client skips a while
                out, m = client.infer(*x)
                assert_same(out, expected)
                assert m.fallback and m.fallback_s > 0
        with SplitClient(plan, [edge.endpoint, cloud.endpoint], fallback=False) as client:
            with pytest.raises(RemoteError, match=f"{cloud.endpoint} answered UNAVAILABLE: "
                                                  f"Prepare on {cloud.endpoint} \\(cloud\\)"):
                client.infer(*x)
    finally:
        edge.stop(0)


def test_first_reason_names_the_unreachable_endpoint():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as edge, serve_in_thread([SKIPPY]) as cloud:
        plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
        with SplitClient(plan, [edge.endpoint, cloud.endpoint]) as client:
            client.infer(*x)
            cloud.stop(0)
            out, m = client.infer(*x)
    assert_same(out, expected)
    assert m.fallback and f"next tier {cloud.endpoint} is unreachable" in m.fallback_reason


@pytest.mark.parametrize("victim", ["cloud", "edge"])
def test_kill_9_during_bench_loses_no_request(victim):
    _, x, expected = whole(SKIPPY)
    env = {"PYTHONPATH": "tests"}
    with spawn([SKIPPY], env=env) as edge, spawn([SKIPPY], env=env) as cloud:
        procs = {"edge": edge, "cloud": cloud}
        plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
        with SplitClient(plan, [edge.endpoint, cloud.endpoint], retry_after_s=0.05) as client:
            assert_same(client.infer(*x)[0], expected)  # across processes, bit for bit

            def progress(done, total):
                if done == 6:
                    procs[victim].kill()

            result = client.bench(x, requests=20, concurrency=4, progress=progress)
            assert len(result.measurements) == 20 and result.requests == 20
            assert result.fallbacks >= 1
            assert sum(not m.fallback for m in result.measurements) >= 6
            out, m = client.infer(*x)
            assert_same(out, expected)
            assert m.fallback


def test_graceful_stop_finishes_the_request_in_flight():
    _, x, expected = whole(SKIPPY)
    edge = ServerThread(TierServer([SKIPPY], backend="test-slow"))
    plan = StagePlan.from_assignment(SKIPPY, {n: 0 if n in SKIP and SKIP[n] == 0 else 1
                                              for n in SKIP}, TIERS[:2])
    result = {}
    with SplitClient(plan, [edge.endpoint]) as client:
        client.prepare()
        worker = threading.Thread(target=lambda: result.update(r=client.infer(*x)))
        worker.start()
        with grpc.insecure_channel(edge.endpoint) as channel:
            stub = pb_grpc.TierServerStub(channel)
            deadline = time.monotonic() + 10
            while stub.Load(pb.LoadRequest()).load.in_flight == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        t = time.perf_counter()
        edge.stop(grace=5)
        assert time.perf_counter() - t < 5  # it waited for the request, not for the grace
        worker.join(10)
        out, m = result["r"]
        assert_same(out, expected)
        assert not m.fallback and m.servers[0].compute_s >= SLOW_S
        out, m = client.infer(*x)  # the server is gone: this one finishes locally
        assert_same(out, expected)
        assert m.fallback


def test_deadline_falls_back_to_local():
    _, x, expected = whole(SKIPPY)
    with ServerThread(TierServer([SKIPPY], backend="test-slow")) as edge:
        plan = StagePlan.from_assignment(SKIPPY, {n: min(s, 1) for n, s in SKIP.items()},
                                         TIERS[:2])
        with SplitClient(plan, [edge.endpoint], deadline_s=0.15) as client:
            client.prepare()
            t = time.perf_counter()
            out, m = client.infer(*x)
            assert time.perf_counter() - t < SLOW_S
    assert_same(out, expected)
    assert m.fallback and "DEADLINE_EXCEEDED" in m.fallback_reason


def test_restarted_server_is_prepared_again():
    _, x, expected = whole(SKIPPY)
    first = serve_in_thread([SKIPPY])
    port = first.server.port
    plan = StagePlan.from_assignment(SKIPPY, {n: min(s, 1) for n, s in SKIP.items()}, TIERS[:2])
    with SplitClient(plan, [first.endpoint], retry_after_s=0.0) as client:
        assert not client.infer(*x)[1].fallback
        first.stop(0)
        again = serve_in_thread([SKIPPY], port=port)  # a new process would forget the plan too
        try:
            for _ in range(50):
                out, m = client.infer(*x)
                assert_same(out, expected)
                if not m.fallback:
                    break
                time.sleep(0.05)
            assert not m.fallback
        finally:
            again.stop(0)


def test_server_that_forgot_the_plan_is_prepared_again():
    _, x, expected = whole(SKIPPY)
    with serve_in_thread([SKIPPY]) as edge, serve_in_thread([SKIPPY]) as cloud:
        plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
        with SplitClient(plan, [edge.endpoint, cloud.endpoint]) as client:
            client.infer(*x)
            cloud.server._stages.prepared.clear()  # as after a restart: the edge gets NOT_FOUND
            out, m = client.infer(*x)
    assert_same(out, expected)
    assert not m.fallback


def test_sigterm_drains_the_request_in_flight():
    graph = model_graph("resnet18", batch=4)
    plan = StagePlan.from_assignment("resnet18", {n.name: 1 for n in graph.compute_nodes},
                                     TIERS[:2], batch=4)
    x = example_inputs(plan)
    result = {}
    with spawn(["resnet18"], threads=1) as edge:
        with SplitClient(plan, [edge.endpoint]) as client:
            client.prepare()
            worker = threading.Thread(target=lambda: result.update(r=client.infer(*x)))
            worker.start()
            with grpc.insecure_channel(edge.endpoint) as channel:
                stub = pb_grpc.TierServerStub(channel)
                while stub.Load(pb.LoadRequest()).load.in_flight == 0:
                    time.sleep(0.005)
            assert edge.terminate() == 0
            worker.join(30)
    out, m = result["r"]
    assert not m.fallback and m.servers[0].compute_s > 0
    assert any("stopped" in line for line in edge.log)
