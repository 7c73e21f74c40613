"""Cluster files: what loads, and every bad input refused with the node or pair it names."""
import pytest

from tiercut.cluster import (Cluster, ClusterError, ClusterNode, cluster_from_dict,
                             load_cluster, parse_bytes, plan_cluster)
from tiercut.errors import TiercutError
from tiercut.measure.profile import NodeProfile, Profile
from tiercut.planner.scenario import Link


def chain_profile(model: str = "toy", n: int = 5, host: str = "ref", scale: float = 1.0
                  ) -> Profile:
    nodes = tuple(NodeProfile(f"n{i}", (f"n{i - 1}",) if i else (), latency_s=0.002 * (i + 1)
                              / scale, output_bytes=10_000 * (n - i), param_bytes=4000)
                  for i in range(n))
    return Profile(model=model, host={"name": host}, input_bytes=60_000, outputs=(f"n{n - 1}",),
                   nodes=nodes)


@pytest.fixture
def files(tmp_path):
    chain_profile().save(tmp_path / "ref.json")
    chain_profile(host="fast", scale=3).save(tmp_path / "fast.json")
    chain_profile(model="other", n=4).save(tmp_path / "other.json")
    return tmp_path


YAML = """
reference: ref.json
source: phone
sink: phone
nodes:
  - {name: phone, speed: 0.5, memory: 2mb, power_w: 3}
  - {name: pi, speed: 1}
  - {name: laptop, profile: fast.json, memory: 1gib}
links:
  default: 100mbit,2ms
  phone-pi: 20mbit,5ms
  pi-laptop: {rate: 1gbit, delay: 1ms}
medium: {rate: 50mbit, nodes: [phone, pi]}
"""


def test_a_yaml_cluster_loads_and_plans(files):
    (files / "c.yaml").write_text(YAML)
    c = load_cluster(files / "c.yaml")
    assert c.names == ("phone", "pi", "laptop")
    assert c.node("phone").memory_bytes == 2_000_000
    assert c.node("laptop").memory_bytes == 2 ** 30
    assert c.link("pi", "phone") == Link(20e6, 0.005)  # one direction covers both
    assert c.link("phone", "laptop") == Link(100e6, 0.002)
    assert c.link("pi", "pi") is None
    assert c.medium.carries("phone", "pi") and not c.medium.carries("pi", "laptop")
    profiles = c.profiles()
    assert profiles["phone"].total_latency_s == pytest.approx(2 * profiles["pi"].total_latency_s)
    plan = plan_cluster(c, method="exact")
    assert plan.source == plan.sink == "phone"
    assert plan.throughput_fps > 0 and plan.energy_j >= 0


def test_json_clusters_load_too(files):
    (files / "c.json").write_text('{"nodes": [{"name": "a", "profile": "ref.json"}, '
                                  '{"name": "b", "speed": 2}], "reference": "ref.json", '
                                  '"links": {"a-b": "1gbit"}}')
    c = load_cluster(files / "c.json")
    assert c.source == c.sink == "a"
    assert plan_cluster(c, method="chain").stages


def test_a_profile_of_another_model_is_refused_naming_the_node(files):
    c = cluster_from_dict({"nodes": [{"name": "a", "profile": "ref.json"},
                                     {"name": "b", "profile": "other.json"}],
                           "links": {"default": "1gbit"}}, files)
    with pytest.raises(ClusterError, match="node 'b' profiles 'other'.*same graph"):
        plan_cluster(c)
    ok = cluster_from_dict({"nodes": [{"name": "a", "profile": "ref.json"}],
                            "links": {"default": "1gbit"}}, files)
    with pytest.raises(ClusterError, match="model 'other'.*is not the graph"):
        plan_cluster(ok, chain_profile(model="other", n=4))


def test_a_missing_pair_is_refused_naming_it():
    nodes = tuple(ClusterNode(n, chain_profile()) for n in ("a", "b", "c"))
    with pytest.raises(ClusterError, match="no link for b-c.*default"):
        Cluster(nodes, {("a", "b"): Link(1e6), ("a", "c"): Link(1e6)})
    Cluster(nodes, {("a", "b"): Link(1e6)}, default_link=Link(1e7))  # a default covers it


@pytest.mark.parametrize("data, match", [
    ({"nodes": [{"name": "a"}], "links": {"a-z": "1mbit"}}, "link a-z names unknown node 'z'"),
    ({"nodes": [{"name": "a"}], "source": "q"}, "the source names unknown node 'q'"),
    ({"nodes": [{"name": "a"}], "sink": "q"}, "the sink names unknown node 'q'"),
    ({"nodes": [{"name": "a"}], "medium": {"rate": "1mbit", "nodes": ["a", "w"]}},
     "the medium names unknown node 'w'"),
    ({"nodes": [{"name": "a"}, {"name": "a"}]}, "node names repeat"),
    ({"nodes": [{"name": "a", "speed": 0}]}, "node 'a': speed must be a number > 0"),
    ({"nodes": [{"name": "a", "memory": "lots"}]}, "memory: 'lots' is not a size"),
    ({"nodes": [{"name": "a", "ram": 1}]}, r"unknown keys \['ram'\]; accepted: memory"),
    ({"nodes": [{"name": "a"}], "cloud": 1}, r"unknown keys \['cloud'\]; accepted"),
    ({"nodes": [{"name": "a"}], "links": {"ab": "1mbit"}}, "a link key is 'A-B'"),
    ({"nodes": [{"name": "a"}], "links": {"default": "fast"}}, "not a rate like 10mbit"),
    ({"nodes": [{"name": "a"}], "medium": {"speed": 1}}, "medium is {rate"),
    ({"nodes": []}, "at least one node"),
    ("nodes", "a cluster is a mapping"),
])
def test_bad_cluster_files_name_what_is_wrong(data, match):
    with pytest.raises(ClusterError, match=match) as info:
        cluster_from_dict(data)
    assert isinstance(info.value, TiercutError) and isinstance(info.value, ValueError)


def test_a_node_without_profile_needs_a_reference():
    c = Cluster((ClusterNode("a", speed=2),))
    with pytest.raises(ClusterError, match="node 'a' has no profile.*'reference'"):
        plan_cluster(c)
    assert plan_cluster(c, chain_profile()).period_s == pytest.approx(
        chain_profile().total_latency_s / 2)


def test_unknown_nodes_and_methods_are_refused():
    c = Cluster((ClusterNode("a", chain_profile()),))
    with pytest.raises(ClusterError, match="unknown node 'x'; nodes are \\['a'\\]"):
        plan_cluster(c, nodes=["x"])
    with pytest.raises(ClusterError, match="method 'best': accepted exact, swarm, chain"):
        plan_cluster(c, method="best")
    with pytest.raises(ClusterError, match="cuts 'some': accepted single, all"):
        plan_cluster(c, cuts="some")
    big = Cluster(tuple(ClusterNode(f"n{i}", chain_profile()) for i in range(9)),
                  default_link=Link(1e9))
    with pytest.raises(ClusterError, match="use method='swarm'"):
        plan_cluster(big, method="exact")


def test_sizes_parse_with_units():
    assert parse_bytes("512mb", "x") == 512_000_000
    assert parse_bytes("2GiB", "x") == 2 * 2 ** 30
    assert parse_bytes(1234, "x") == 1234


def test_a_traced_graph_is_checked_against_the_profiles():
    import torch
    from torch import nn

    from tiercut import trace

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    graph = trace(net, (torch.zeros(1, 3, 16, 16),), name="tiny")
    profile = Profile.from_graph(graph, {n.name: 0.001 for n in graph.compute_nodes})
    c = Cluster((ClusterNode("a", profile), ClusterNode("b", profile, speed=2)),
                default_link=Link(1e9, 0.001))
    plan = plan_cluster(c, graph)
    assert plan.model == "tiny" and plan.throughput_fps > 0
    with pytest.raises(ClusterError, match="is not the graph"):
        plan_cluster(Cluster((ClusterNode("a", chain_profile()),)), graph)
