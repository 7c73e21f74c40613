"""A tier server runs its stage with one run divided across peer tier servers (the plan's
``division``): the answer equals the whole model bit for bit, a stopped peer's part is
recomputed, a peer off the server's --peers allowlist is refused at Prepare, and plans
without a division keep their JSON and id."""
import grpc
import pytest
import torch

from tiercut.graph.split import node_values
from tiercut.runtime.client import SplitClient
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.stageplan import StagePlan, model_graph

pytestmark = pytest.mark.slow

MODEL, FIRST, LAST = "resnet18", "conv1", "layer1_1_relu_1"


@pytest.fixture(scope="module")
def cluster():
    peers = [serve_in_thread([MODEL], threads=1) for _ in range(2)]
    eps = [p.endpoint for p in peers]
    edge = serve_in_thread([MODEL], threads=1, peers=eps)
    yield edge, peers
    for s in [edge, *peers]:
        s.stop(0)


def plans(peers):
    graph = model_graph(MODEL)
    compute = [n.name for n in graph.compute_nodes]
    assignment = {n: 1 for n in compute}
    assignment[compute[0]] = 1
    plain = StagePlan(MODEL, ("device", "edge"), assignment)
    div = StagePlan(MODEL, ("device", "edge"), assignment,
                    division={"stage": 1, "first": FIRST, "last": LAST, "bounds": [28],
                              "peers": list(peers)})
    return graph, plain, div


def reference(graph):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    return x, node_values(graph, x)[graph.outputs[0]]


def test_divided_stage_is_exact_and_survives_a_stopped_peer(cluster):
    edge, peers = cluster
    graph, plain, div = plans([p.endpoint for p in peers])
    x, ref = reference(graph)
    with SplitClient(div, [edge.endpoint]) as client:
        assert torch.equal(client.infer(x)[0], ref)
        peers[1].stop(0)
        assert torch.equal(client.infer(x)[0], ref)


def test_a_peer_off_the_allowlist_is_refused(cluster):
    edge, peers = cluster
    graph, _, div = plans([peers[0].endpoint, "10.9.9.9:1234"])
    x, _ = reference(graph)
    with pytest.raises(Exception) as info:
        with SplitClient(div, [edge.endpoint]) as client:
            client.infer(x)
    assert "10.9.9.9:1234" in str(info.value)
    assert "INVALID_ARGUMENT" in str(info.value) or "allowed" in str(info.value)


def test_plans_without_a_division_keep_their_json():
    _, plain, div = plans(["127.0.0.1:1", "127.0.0.1:2"])
    assert "division" not in plain.canonical()
    assert plain.plan_id != div.plan_id
    assert StagePlan.from_json(div.to_json()).plan_id == div.plan_id
    assert StagePlan.from_json(plain.to_json()).plan_id == plain.plan_id


def test_a_divided_plan_from_plan_json_runs_with_its_peers_mapped(cluster):
    """What `tiercut plan --divide --json` prints, as `tiercut infer --peers` reads it."""
    from tiercut.runtime.stageplan import PlanError

    edge, peers = cluster
    graph = model_graph(MODEL)
    data = {"model": MODEL, "hosts": {"device": "phone", "edge": "e0"},
            "route": {"tiers": [0, 1], "hosts": ["phone", "e0"]}, "private": [],
            "assignment": {n.name: "edge" for n in graph.compute_nodes},
            "division": {"first": FIRST, "last": LAST, "coordinator": "e0",
                         "hosts": ["e1", "e2"], "row_bounds": [20]}}
    with pytest.raises(PlanError, match="--peers NAME=host:port"):
        StagePlan.from_dict(data)
    with pytest.raises(PlanError, match=r"names \['e2'\], which --peers does not map"):
        StagePlan.from_dict(data, peers={"e1": peers[0].endpoint})
    plan = StagePlan.from_dict(data, peers={"e1": peers[0].endpoint, "e2": peers[0].endpoint})
    assert plan.division["stage"] == 1 and plan.division["bounds"] == [20]
    x, ref = reference(graph)
    with SplitClient(plan, [edge.endpoint]) as client:
        assert torch.equal(client.infer(x)[0], ref)
    # the coordinator taking a part itself: it computes it where the stage runs ("local"),
    # whatever --peers says of it (its own endpoint would queue behind the stage it serves)
    data["division"]["hosts"] = ["e0", "e1"]
    mine = StagePlan.from_dict(data, peers={"e1": peers[0].endpoint, "e0": edge.endpoint})
    assert mine.division["peers"] == ["local", peers[0].endpoint]
    with SplitClient(mine, [edge.endpoint]) as client:
        assert torch.equal(client.infer(x)[0], ref)
