"""The runtime across real gRPC servers on 127.0.0.1: split inference equals the whole model.

Servers run in this process (each on its own event loop thread) unless a test needs to kill
one; tests/test_runtime_faults.py has the subprocess and shutdown cases.
"""
import random
import re

import grpc
import pytest
import torch
from torch import nn

from tiercut import trace
from tiercut.codecs import Limits, encode
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime import wire
from tiercut.runtime.client import InputError, RemoteError, SplitClient
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import PlanError, StagePlan, example_inputs, layout, model_graph
from tiercut.runtime.stream import METHOD
from tiercut.zoo import resolve

from assignments import assert_same, chain_cut, random_assignment

pytestmark = pytest.mark.slow

TIERS = ("device", "edge", "cloud")
SKIPPY = "test_runtime:skippy"


class Skippy(nn.Module):
    """Small, with every case the wire must carry: a tensor skipping a tier, ints and a
    torch.Size crossing, outputs produced on the device, the edge and the cloud."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1, self.l2, self.l3 = (nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8),
                                              nn.Linear(8, 4))

    def forward(self, x):
        a = torch.relu(self.l0(x))
        n = x.shape[0]
        b = self.l1(a)
        c = torch.tanh(self.l2(b))
        d = self.l3(c + a)
        return d.reshape(n, -1), b, x.size()


def skippy() -> nn.Module:
    return Skippy()


skippy.input_shape = (2, 8)

DEVICE_NODES = ("l0", "relu", "getattr_1", "getitem", "size")
# relu and getitem go device -> cloud through the edge, which does not read them.
SKIP = {**dict.fromkeys(DEVICE_NODES, 0), "l1": 0, "l2": 1, "tanh": 1, "add": 2, "l3": 2,
        "reshape": 2}
# l1, a model output, is produced on the edge and must come back from there.
EARLY = {**SKIP, "l1": 1}


@pytest.fixture(scope="module")
def servers():
    # Every tier and the reference run with one intra-op thread: kernels split their work by
    # thread count, and bit-equal answers need the same split everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = [SKIPPY, "squeezenet1_1", "resnet18"]
    edge, cloud = serve_in_thread(models, threads=1), serve_in_thread(models, threads=1)
    yield edge, cloud
    edge.stop(0)
    cloud.stop(0)
    torch.set_num_threads(threads)


def whole(model_name):
    entry = resolve(model_name)
    model = entry.build()
    x = entry.example_inputs(entry.inputs[0].shape[0])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the servers run
    try:
        with torch.inference_mode():
            return model, x, model(*x)
    finally:
        torch.set_num_threads(threads)


def run_split(plan, endpoints, x, **kwargs):
    with SplitClient(plan, endpoints, **kwargs) as client:
        return client.infer(*x)


@pytest.mark.parametrize("assignment", [SKIP, EARLY], ids=["skip-tier", "early-output"])
def test_three_tiers_skip_and_early_outputs(servers, assignment):
    edge, cloud = servers
    _, x, expected = whole(SKIPPY)
    plan = StagePlan.from_assignment(SKIPPY, assignment, TIERS)
    lay = layout(plan)
    skipping = ["relu", "getitem"] if assignment is SKIP else ["getitem"]
    for value in skipping:  # they pass the edge by: it forwards them without reading them
        assert value in lay.receives[1] and value in lay.receives[2]
        assert value not in lay.stages[1].inputs
    out, m = run_split(plan, [edge.endpoint, cloud.endpoint], x)
    assert_same(out, expected)
    assert isinstance(out[2], torch.Size)
    assert not m.fallback
    assert [(h.src, h.dst) for h in m.hops] == [("device", "edge"), ("edge", "cloud")]
    assert [t.tier for t in m.servers] == ["edge", "cloud"]
    assert all(h.bytes_sent > 0 for h in m.hops)
    assert m.total_s >= m.rpc_s > 0


@pytest.mark.parametrize("model_name", ["squeezenet1_1", "resnet18"])
def test_random_splits_equal_whole(servers, model_name):
    edge, cloud = servers
    model, x, expected = whole(model_name)
    graph = trace(model, x, name=model_name)
    rng = random.Random(7)
    cases = [(2, chain_cut(graph, 2, rng)), (2, random_assignment(graph, 2, rng)),
             (3, chain_cut(graph, 3, rng)), (3, random_assignment(graph, 3, rng))]
    used = 0
    for stages, assignment in cases:
        plan = StagePlan.from_assignment(model_name, assignment, TIERS[:stages])
        out, m = run_split(plan, [edge.endpoint, cloud.endpoint][:stages - 1], x)
        assert_same(out, expected)
        remote = any(s > 0 for s in assignment.values())  # else nothing is sent
        assert not m.fallback and len(m.servers) == (stages - 1 if remote else 0)
        used += remote
    assert used >= 3


def test_plan_json_from_the_planner_runs(servers):
    edge, cloud = servers
    _, x, expected = whole(SKIPPY)
    tier_of = {0: "device", 1: "edge", 2: "cloud"}
    plan_dict = {"model": SKIPPY, "route": {"tiers": [0, 2], "hosts": ["d", "c"]},
                 "hosts": {"device": "d", "edge": None, "cloud": "c"},
                 "assignment": {n: tier_of[2 if s else 0] for n, s in SKIP.items()},
                 "hops": [], "predicted": {}}
    plan = StagePlan.from_dict(plan_dict)
    assert plan.tiers == ("device", "cloud")
    assert StagePlan.from_json(plan.to_json()) == plan
    assert StagePlan.from_json(plan.to_json()).plan_id == plan.plan_id
    out, m = run_split(plan_dict, [cloud.endpoint], x)
    assert_same(out, expected)
    assert [t.tier for t in m.servers] == ["cloud"]


def test_plan_validation_names_the_field():
    with pytest.raises(PlanError, match="no field 'route'|'format'"):
        StagePlan.from_dict({"model": "resnet18"})
    with pytest.raises(PlanError, match="node 'l1' on tier 'moon'"):
        StagePlan.from_dict({"model": SKIPPY, "route": {"tiers": [0]},
                             "hosts": {"device": "d"}, "assignment": {"l1": "moon"}})
    with pytest.raises(PlanError, match="'route.tiers' has indices \\[5\\]"):
        StagePlan.from_dict({"model": SKIPPY, "route": {"tiers": [0, 5]},
                             "hosts": {"device": "d"}, "assignment": {}})
    with pytest.raises(PlanError, match="stage 3"):
        StagePlan.from_assignment(SKIPPY, {"l1": 3}, TIERS)
    with pytest.raises(PlanError, match="not valid JSON"):
        StagePlan.from_json("{nope")


def test_wire_round_trips_non_tensor_values():
    value = (torch.arange(6).reshape(2, 3), 3, -2**40, 1.5, True, None, [torch.ones(1)],
             torch.Size([2, 8]))
    named, _ = wire.encode_values({"v": value})
    back, n = wire.decode_values(pb.InferRequest(values=named).values)
    assert_same(back["v"], value)
    assert type(back["v"][6]) is list and type(back["v"][7]) is torch.Size
    assert n == len(encode(value[0])) + len(encode(value[6][0]))
    with pytest.raises(wire.WireError, match="cannot be sent"):
        wire.encode_values({"v": object()})


def test_lossy_codec_and_bench(servers):
    edge, cloud = servers
    _, x, expected = whole("squeezenet1_1")
    graph = trace(resolve("squeezenet1_1").build(), x, name="squeezenet1_1")
    plan = StagePlan.from_assignment("squeezenet1_1", chain_cut(graph, 3, random.Random(3)),
                                     TIERS)
    out, m = run_split(plan, [edge.endpoint, cloud.endpoint], x, codec="fp16")
    assert torch.allclose(out, expected, rtol=1e-2, atol=1e-2)
    with SplitClient(plan, [edge.endpoint, cloud.endpoint]) as client:
        result = client.bench(x, requests=8, concurrency=3)
    assert result.requests == 8 and result.fallbacks == 0 and result.throughput > 0
    assert result.latency_s["p50"] <= result.latency_s["p99"]


def test_wrong_inputs_are_refused_on_the_device(servers):
    edge, cloud = servers
    plan = StagePlan.from_assignment(SKIPPY, SKIP, TIERS)
    with SplitClient(plan, [edge.endpoint, cloud.endpoint]) as client:
        with pytest.raises(InputError, match=r"'x' should be tensor \[2, 8\] float32, got "
                                             r"tensor \[3, 8\]"):
            client.infer(torch.randn(3, 8))
    with pytest.raises(ValueError, match="give 2 endpoints"):
        SplitClient(plan, [edge.endpoint])


# --- bad requests straight to a server: the right status, a clear message, still serving ----

@pytest.fixture(scope="module")
def strict_server():
    server = serve_in_thread([SKIPPY], threads=1, limits=Limits(max_elements=1000))
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def prepared(strict_server):
    plan = StagePlan.from_assignment(SKIPPY, {n: 0 if n in DEVICE_NODES else 1 for n in EARLY},
                                     TIERS[:2])
    channel = grpc.insecure_channel(strict_server.endpoint)
    stub = pb_grpc.TierServerStub(channel)
    reply = stub.Prepare(pb.PrepareRequest(plan_json=plan.to_json(), stage=1))
    assert reply.plan_id == plan.plan_id and reply.tier == "edge"
    # what the device would send: stage 0 run on the example input
    lay = layout(plan)
    env = {"x": example_inputs(plan)[0]}
    env.update(lay.stages[0].run(env))
    good = {v: env[v] for v in lay.receives[1]}
    assert set(good) == {"relu", "getitem"}
    yield plan, stub, good
    channel.close()


def _named(values):
    """NamedValues for ``values``; bytes go as they are (a frame made by hand)."""
    named = []
    for name, value in values.items():
        if isinstance(value, bytes):
            named.append(pb.NamedValue(name=name, value=pb.Value(tensor=value)))
        else:
            named.extend(wire.encode_values({name: value})[0])
    return named


def _infer(stub, plan, values, plan_id=None):
    return stub.Infer(pb.InferRequest(plan_id=plan_id or plan.plan_id, values=_named(values)),
                      timeout=30)


def _lying_frame(tensor):
    """A valid frame whose header claims a larger first dimension than its payload holds."""
    frame = bytearray(encode(tensor))
    offset = len(frame) - tensor.numel() * tensor.element_size() - 8 * tensor.ndim
    frame[offset:offset + 8] = (tensor.shape[0] * 10).to_bytes(8, "little")
    return bytes(frame)


BAD_REQUESTS = {
    "garbage-frame": (lambda g: {**g, "relu": b"\x00garbage" * 5},
                      grpc.StatusCode.INVALID_ARGUMENT, "value 'relu': undecodable tensor frame"),
    "wrong-shape": (lambda g: {**g, "relu": torch.zeros(3, 8)}, grpc.StatusCode.INVALID_ARGUMENT,
                    r"value 'relu' should be tensor \[2, 8\] float32, got tensor \[3, 8\]"),
    "wrong-dtype": (lambda g: {**g, "relu": torch.zeros(2, 8, dtype=torch.float64)},
                    grpc.StatusCode.INVALID_ARGUMENT, r"should be tensor \[2, 8\] float32, got "
                                                      r"tensor \[2, 8\] float64"),
    "int-for-tensor": (lambda g: {**g, "relu": 5}, grpc.StatusCode.INVALID_ARGUMENT,
                       r"value 'relu' should be tensor \[2, 8\] float32, got int"),
    "missing-value": (lambda g: {"relu": g["relu"]}, grpc.StatusCode.INVALID_ARGUMENT,
                      r"missing values \['getitem'\]"),
    "unexpected-value": (lambda g: {**g, "bogus": 1}, grpc.StatusCode.INVALID_ARGUMENT,
                         r"unexpected values \['bogus'\]"),
    "over-size-limit": (lambda g: {**g, "relu": torch.zeros(40, 40)},
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "max_elements = 1000"),
    "lying-header": (lambda g: {**g, "relu": _lying_frame(g["relu"])},
                     grpc.StatusCode.INVALID_ARGUMENT, "value 'relu': undecodable tensor frame: "
                                                       "codec frame: payload length"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_and_server_keeps_serving(prepared, case):
    plan, stub, good = prepared
    make, code, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, plan, make(good))
    assert info.value.code() == code, info.value.details()
    assert re.search(message, info.value.details()), info.value.details()
    reply = _infer(stub, plan, good)  # and the next good request is answered
    assert {o.name for o in reply.outputs} == {"l1", "reshape"}
    assert reply.timings[0].tier == "edge" and reply.load.served >= 1


def test_bad_requests_on_one_stream_are_refused_in_band_and_the_stream_goes_on(prepared,
                                                                               strict_server):
    plan, stub, good = prepared
    requests, expected = [], {}
    for i, (case, (make, code, message)) in enumerate(BAD_REQUESTS.items()):
        for rid, values, want in ((f"bad-{i}", make(good), (code, message)),
                                  (f"good-{i}", good, None)):
            requests.append(pb.InferRequest(plan_id=plan.plan_id, request_id=rid,
                                            values=_named(values)))
            expected[rid] = want
    requests.append(pb.InferRequest(plan_id=plan.plan_id, request_id="late",
                                    values=_named(good), timeout_s=float("nan")))
    expected["late"] = (grpc.StatusCode.INVALID_ARGUMENT, "timeout_s nan is not a number")
    with grpc.insecure_channel(strict_server.endpoint) as channel:
        stream = channel.stream_stream(METHOD, request_serializer=pb.InferRequest.SerializeToString,
                                       response_deserializer=pb.InferStreamReply.FromString)
        answers = {a.request_id: a for a in stream(iter(requests), timeout=30)}
        assert set(answers) == set(expected)  # every request answered, in whatever order
        for rid, want in expected.items():
            answer = answers[rid]
            if want is None:
                assert answer.code == 0 and {o.name for o in answer.reply.outputs} == \
                    {"l1", "reshape"}
            else:
                assert answer.code == want[0].value[0], (rid, answer.message)
                assert re.search(want[1], answer.message), answer.message
        # bytes that are no InferRequest: the stream cannot tell which request they were, so
        # it ends with INVALID_ARGUMENT; the server goes on serving
        raw = channel.stream_stream(METHOD, request_serializer=lambda b: b,
                                    response_deserializer=pb.InferStreamReply.FromString)
        answers = list(raw(iter([b"\xff\xff\xff"]), timeout=30))
        assert [a.code for a in answers] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]]
        assert "not a valid InferRequest" in answers[0].message
    assert _infer(stub, plan, good).outputs


def test_unknown_plan_model_and_bad_prepare(prepared, strict_server):
    plan, stub, good = prepared
    with pytest.raises(grpc.RpcError) as info:
        _infer(stub, plan, good, plan_id="f" * 64)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert re.search("unknown plan id .* send Prepare first", info.value.details())
    other = StagePlan.from_assignment("resnet18", {}, TIERS[:2])
    with pytest.raises(grpc.RpcError) as info:
        stub.Prepare(pb.PrepareRequest(plan_json=other.to_json(), stage=1))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "model 'resnet18' is not hosted here; this server hosts ['test_runtime:skippy']" in \
        info.value.details()
    for request, fragment in [
            (pb.PrepareRequest(plan_json="{", stage=1), "not valid JSON"),
            (pb.PrepareRequest(plan_json=plan.to_json(), stage=7), "stage 7 is out of range"),
            (pb.PrepareRequest(plan_json=plan.to_json(), stage=1, forward_codec="q99"),
             "unknown codec 'q99'")]:
        with pytest.raises(grpc.RpcError) as info:
            stub.Prepare(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in info.value.details()
    assert _infer(stub, plan, good).outputs
    health = stub.Health(pb.HealthRequest())
    assert health.status == pb.HealthReply.SERVING and list(health.models) == [SKIPPY]
    assert stub.Load(pb.LoadRequest()).load.served >= 1


def test_client_reports_server_refusal(strict_server):
    graph = model_graph("resnet18")
    plan = StagePlan.from_assignment("resnet18", {n.name: 1 for n in graph.compute_nodes},
                                     TIERS[:2])
    with SplitClient(plan, [strict_server.endpoint]) as client:
        with pytest.raises(RemoteError, match="NOT_FOUND: Prepare: model 'resnet18' is not hosted"):
            client.infer(*example_inputs(plan))


# --- the commands ---------------------------------------------------------------------------

def test_infer_and_bench_commands(servers, tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from tiercut.cli.serve import _app

    edge, cloud = servers
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(StagePlan.from_assignment(SKIPPY, SKIP, TIERS).to_json())
    npy = tmp_path / "x.npy"
    np.save(npy, example_inputs(StagePlan.from_json(plan_path.read_text()))[0].numpy())
    runner, app = CliRunner(), _app()
    eps = f"{edge.endpoint},{cloud.endpoint}"
    result = runner.invoke(app, ["infer", "--plan", str(plan_path), "--endpoints", eps,
                                 "--input", str(npy)])
    assert result.exit_code == 0, result.output
    assert "output [2, 4] float32" in result.output and "hop device->edge" in result.output
    result = runner.invoke(app, ["bench", "--plan", str(plan_path), "--endpoints", eps,
                                 "--requests", "4", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert "req/s" in result.output and "fallbacks 0" in result.output
    for args, fragment in [
            (["--endpoints", "nohost"], "is not host:port"),
            (["--endpoints", edge.endpoint], "give 2 endpoints"),
            (["--endpoints", eps, "--codec", "zip"], "unknown codec 'zip'"),
            (["--endpoints", eps, "--input", str(tmp_path / "none.pt")], "does not exist")]:
        result = runner.invoke(app, ["infer", "--plan", str(plan_path), *args])
        assert result.exit_code == 2, result.output
        assert fragment in _flat(result.output), result.output
    result = runner.invoke(app, ["infer", "--plan", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "nope.json" in _flat(result.output)
    result = runner.invoke(app, ["serve", "--models", "resnet1000"])
    assert result.exit_code == 2 and "unknown model 'resnet1000'" in _flat(result.output)
    taken = edge.endpoint.rpartition(":")[2]
    result = runner.invoke(app, ["serve", "--port", taken, "--models", "squeezenet1_1"])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{taken}" in _flat(result.output)
    result = runner.invoke(app, ["serve", "--models", "squeezenet1_1", "--cpus", "4096"])
    assert result.exit_code == 2 and "--cpus: CPUs [4096] do not exist here" in _flat(result.output)


def _flat(text):
    """Rich wraps error messages in a box: join them back into one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_onnxruntime_backend_plugs_in(tmp_path):
    from tiercut.runtime.launch import ServerThread
    from tiercut.runtime.server import TierServer

    spec = "userzoo:tiny_cnn"
    names = [n.name for n in model_graph(spec).compute_nodes]
    plan = StagePlan.from_assignment(spec, {n: int(i >= 2) for i, n in enumerate(names)},
                                     TIERS[:2])
    x = example_inputs(plan)
    with torch.inference_mode():
        expected = resolve(spec).build()(*x)
    with ServerThread(TierServer([spec], backend="onnxruntime", cache_dir=tmp_path)) as edge:
        out, m = run_split(plan, [edge.endpoint], x)
    assert not m.fallback and list(tmp_path.glob("*.onnx"))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
