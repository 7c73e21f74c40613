"""Private input: the input, its readers and a prefix of the graph stay on the device, in every
method's plan, in decision tables, in the joint cut and codec, and in every plan a simulated
policy uses; the plan is still the best among those that keep it; bad settings are named.

The zoo graphs are traced for real; their node latencies are made from FLOPs (a fixed cost plus
FLOPs / speed) so the plans are the same on every machine."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from test_calibrate import scenario as codec_scenario, toy_table
from test_planner import three_tiers
from tiercut import trace, zoo
from tiercut.adapt.policies import build_policy
from tiercut.cli import app
from tiercut.link.traces import BandwidthTrace
from tiercut.measure.predict import scale_profile
from tiercut.measure.profile import Profile
from tiercut.planner import (Constraints, Host, InfeasibleError, Scenario, brute,
                             load_scenario, parse_link, plan)
from tiercut.planner.build import build, routes
from tiercut.planner.compress import hop_codec, plan_with_codecs
from tiercut.planner.privacy import PrivateInputError
from tiercut.planner.problem import INF, Route, evaluate, memory_use
from tiercut.planner.scenario import RAW
from tiercut.planner.table import build_table, plan_cost, with_device_bandwidth
from tiercut.sim.run import prepare
from tiercut.sim.simulator import Arrivals

FAST = {("device", "edge"): "50mbit,5ms", ("edge", "cloud"): "1gbit,5ms",
        ("device", "cloud"): "20mbit,20ms"}
LAN = {("device", "edge"): "1gbit,0.2ms", ("edge", "cloud"): "10gbit,0.1ms",
       ("device", "cloud"): "1gbit,0.5ms"}  # digits_cnn is tiny: only a near link offloads it


def flops_profile(name: str) -> Profile:
    entry = zoo.entry(name)
    graph = trace(entry.build(), entry.example_inputs(), name=name)
    return Profile.from_graph(graph, latency_s={n.name: 2e-6 + n.flops * 1e-10
                                                for n in graph.compute_nodes},
                              host={"name": "reference"})


def zoo_scenario(profile: Profile, links: dict = FAST, device_memory: int | None = None) -> Scenario:
    hosts = tuple(Host(h, t, scale_profile(profile, s, h),
                       memory_bytes=device_memory if t == "device" else None)
                  for h, t, s in (("phone", "device", 0.1), ("e1", "edge", 1.0),
                                  ("c1", "cloud", 5.0)))
    return Scenario(("device", "edge", "cloud"), hosts,
                    {k: parse_link(v) for k, v in links.items()})


@pytest.fixture(scope="module")
def graphs() -> dict[str, Profile]:
    return {name: flops_profile(name) for name in ("digits_cnn", "resnet18", "googlenet")}


def expected_private(profile: Profile, spec) -> set[str]:
    """Straight from the definition: readers of an input, the first N nodes or the named one,
    and all their ancestors."""
    inputs = {i.name for i in profile.inputs}
    seeds = {n.name for n in profile.nodes if not n.inputs or inputs & set(n.inputs)}
    seeds |= ({n.name for n in profile.nodes[:spec]} if isinstance(spec, int) else {spec})
    reads = {n.name: set(n.inputs) - inputs for n in profile.nodes}
    kept, todo = set(seeds), list(seeds)
    while todo:
        for u in reads[todo.pop()] - kept:
            kept.add(u)
            todo.append(u)
    return kept


def assert_private(p, profile: Profile, spec) -> None:
    want = expected_private(profile, spec)
    assert set(p.private) == want
    assert all(p.assignment[n] == "device" for n in want)
    inputs = {i.name for i in profile.inputs}
    assert not any(inputs & set(h.tensors) for h in p.hops), p.hops  # the input never crosses


def private_brute(sc: Scenario, private: set[str]) -> float:
    """The best latency over every route and labelling that keeps ``private`` at label 0,
    by brute force on the unconstrained problems."""
    best = INF
    for route in routes(sc):
        problem, _ = build(sc, route)
        keep = [problem.names.index(n) for n in private]
        best = min(best, brute.solve(problem, None, lambda labels: evaluate(problem, labels)
                                     if all(labels[v] == 0 for v in keep) else INF)[0])
    return best


# ---- every method keeps the prefix and stays optimal among plans that do -----------------
@pytest.mark.parametrize("model,spec", [("digits_cnn", 2), ("digits_cnn", 0),
                                        ("resnet18", 5), ("googlenet", 10)])
def test_every_method_keeps_the_prefix_on_the_device(graphs, model, spec):
    profile = graphs[model]
    sc = zoo_scenario(profile, LAN if model == "digits_cnn" else FAST)
    free = plan(sc)
    assert not expected_private(profile, spec) <= {n for n, t in free.assignment.items()
                                                    if t == "device"}  # the constraint binds
    c = Constraints(private_input=spec)
    methods = ["auto", "mincut", "milp"] + (["chain", "brute"] if model == "digits_cnn" else [])
    plans = {m: plan(sc, constraints=c, method=m) for m in methods}
    for p in plans.values():
        assert_private(p, profile, spec)
        assert math.isclose(p.value, plans["mincut"].value, rel_tol=1e-9)
        assert p.value >= free.value
        assert p.hops, "a plan that offloads after the private prefix"
    if model == "digits_cnn":  # brute force over every labelling that honours the rule
        assert math.isclose(plans["auto"].value,
                            private_brute(sc, expected_private(profile, spec)), rel_tol=1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spec", [0, 2, "n4"])
def test_optimum_equals_brute_force_on_random_dags(seed, spec):
    sc = three_tiers(seed, two_edges=seed % 2 == 1)
    p = plan(sc, constraints=Constraints(private_input=spec))
    profile = sc.hosts[0].profile
    assert_private(p, profile, spec)
    assert math.isclose(p.value, private_brute(sc, expected_private(profile, spec)), rel_tol=1e-9)


def test_named_node_keeps_its_ancestors_on_a_dag(graphs):
    profile = graphs["googlenet"]
    names = [n.name for n in profile.nodes]
    node = next(n for n in names if n.startswith("inception3b"))  # inside a branching block
    p = plan(zoo_scenario(profile), constraints=Constraints(private_input=node))
    assert_private(p, profile, node)
    assert node in p.private and len(p.private) > names.index(node) // 2


def test_scenario_file_field_and_flag_override(graphs, tmp_path):
    sc = zoo_scenario(graphs["digits_cnn"], LAN)
    hosts = []
    for h in sc.hosts:
        h.profile.save(tmp_path / f"{h.name}.json")
        hosts.append({"name": h.name, "tier": h.tier, "profile": f"{h.name}.json"})
    links = {f"{a}-{b}": v for (a, b), v in LAN.items()}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"hosts": hosts, "links": links,
                                                     "private_input": "conv2"}))
    loaded = load_scenario(tmp_path / "s.yaml")
    assert loaded.private_input == "conv2"
    assert set(plan(loaded).private) == {"conv1", "relu1", "conv2"}
    assert set(plan(loaded, constraints=Constraints(private_input=1)).private) == {"conv1"}
    assert not plan(dataclasses.replace(loaded, private_input=None)).private
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"hosts": hosts, "links": links,
                                                       "private_input": "convX"}))
    with pytest.raises(PrivateInputError, match=r"bad.yaml: private input names unknown node "
                                                r"'convX'; nodes are, in order, \['conv1'"):
        load_scenario(tmp_path / "bad.yaml")


# ---- decision tables, the joint cut and codec, the policies ------------------------------
def test_every_table_entry_keeps_the_prefix(graphs):
    profile = graphs["resnet18"]
    sc = zoo_scenario(profile)
    c = Constraints(private_input=5)
    table = build_table(sc, c, 1e5, 1e10)
    free = build_table(sc, Constraints(), 1e5, 1e10)
    assert len(table.entries) >= 2
    for e in table.entries:
        assert_private(e.plan, profile, 5)
    assert any(e.plan.assignment["conv1"] != "device" for e in free.entries)
    for bps in (2e5, 3e6, 4e7, 5e8, 9e9):  # lookups are the constrained optimum
        fresh = plan(with_device_bandwidth(sc, bps), constraints=c)
        got = plan_cost(with_device_bandwidth(sc, bps), table.best(bps))
        assert math.isclose(got, fresh.value, rel_tol=1e-9)


def test_calibrated_cut_below_the_prefix_is_not_admissible():
    sc = codec_scenario(0, 6, True, 2)  # a chain, device and cloud
    table = toy_table(sc, 0)
    free = plan_with_codecs(sc, table, 0.5)
    k = free.position + 2  # the unconstrained joint plan cuts below this prefix
    joint = plan_with_codecs(sc, table, 0.5, constraints=Constraints(private_input=k))
    assert joint.position is None or joint.position >= k
    assert all(joint.plan.assignment[f"n{i}"] == "device" for i in range(k))
    # brute force over the chain's cut q >= k and, at calibrated cuts, the admissible codecs
    n = len(sc.hosts[0].profile.nodes)
    best = INF
    for route in routes(sc):
        raw, _ = build(sc, route)
        if len(route.tiers) == 1:
            best = min(best, evaluate(raw, [0] * len(raw.names)))
            continue
        a, b = (sc.host(h) for h in route.hosts)
        for q in range(k, n + 1):
            labels = [0] * raw.n_inputs + [0 if i < q else 1 for i in range(n)]
            best = min(best, evaluate(raw, labels))
            for r in table.cut(q).allowed(0.5) if q < n else ():
                codecs = {(a.name, b.name): (hop_codec(r, table.cut(q).raw_bytes),),
                          (b.name, a.name): (RAW,)}
                best = min(best, evaluate(build(dataclasses.replace(sc, codecs=codecs),
                                                route)[0], labels))
    assert math.isclose(joint.plan.value, best, rel_tol=1e-9)
    assert joint.plan.value > free.plan.value


def test_simulated_policies_only_use_private_plans(graphs):
    profile = graphs["digits_cnn"]
    sc = zoo_scenario(profile, LAN)
    step = BandwidthTrace((0.0, 10.0, 20.0), (1e9, 2e5, 5e8))
    times = Arrivals("periodic", 5).times(30.0, 0)
    names = ["static", "adaptive", "hedged", "dads", "lyapunov", "oracle"]

    def used(constraints: Constraints) -> dict[str, list]:
        setup = prepare(sc, step, constraints=constraints, fps=2000.0)
        seen = {}
        for name in names:
            policy = build_policy(name, setup.setting)
            chosen, inner = seen.setdefault(name, []), policy.next_plan

            def recording(now, backlog_s=0.0, inner=inner, chosen=chosen):
                p = inner(now, backlog_s)
                chosen.append(p)
                return p
            policy.next_plan = recording
            setup.simulator.run(policy, times, 30.0, 0, None)
        return seen

    free = used(Constraints())
    assert any(p.assignment["conv1"] != "device" for p in free["oracle"])  # it binds
    for name, plans in used(Constraints(private_input=3)).items():
        assert plans, name
        for p in {id(p): p for p in plans}.values():
            assert all(p.assignment[n] == "device" for n in expected_private(profile, 3)), name


# ---- the command line -----------------------------------------------------------------------
def link_flags(links: dict) -> list[str]:
    return [x for (a, b), v in links.items() for x in ("--link", f"{a}-{b}={v}")]


@pytest.fixture(scope="module")
def digits_files(graphs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    flags = []
    for h in zoo_scenario(graphs["digits_cnn"]).hosts:
        h.profile.save(folder / f"{h.name}.json")
        flags += ["--tier", f"{h.tier}={folder / h.name}.json"]
    return flags + link_flags(LAN)


def test_plan_cli_private_input_end_to_end(digits_files):
    runner = CliRunner()
    free = json.loads(runner.invoke(app, ["plan", *digits_files, "--json"]).output)
    assert free["assignment"]["conv1"] != "device" and free["private"] == []
    result = runner.invoke(app, ["plan", *digits_files, "--private-input", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["private"] == ["conv1", "relu1"]
    assert data["assignment"]["conv1"] == data["assignment"]["relu1"] == "device"
    first = data["hops"][0]
    assert first["src"] == "device" and "x" not in first["tensors"]
    assert first["tensors"] == ["relu1"] and first["codec"] == "raw"
    assert first["tensor_bytes"] == [first["bytes"]] and first["bytes"] > 0
    human = runner.invoke(app, ["plan", *digits_files, "--private-input", "relu1"])
    assert human.exit_code == 0, human.output
    text = " ".join(human.output.split())  # rich wraps long lines
    assert "private input: the input and conv1 .. relu1 (2 nodes) never leave the device" in text
    assert f"relu1 {first['bytes'] / 1024:.1f} KiB" in text and "predicted total" in text


def test_plan_cli_from_a_zoo_model():
    """`tiercut plan --model digits_cnn --private-input 2 --json`: profiled here."""
    result = CliRunner().invoke(app, ["plan", "--model", "digits_cnn", "--private-input", "2",
                                      "--json", *link_flags(LAN)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["private"] == ["conv1", "relu1"]
    assert {data["assignment"][n] for n in data["private"]} == {"device"}


@pytest.mark.parametrize("value,match", [
    ("nope", r"private input names unknown node 'nope'; nodes are, in order, \['conv1', 'relu1'"),
    ("-1", r"private input -1 is out of range: give N in 0..11 \(the model has 11 nodes\)"),
    ("12", r"private input 12 is out of range: give N in 0..11"),
])
def test_plan_cli_bad_private_input(digits_files, value, match):
    import re

    result = CliRunner().invoke(app, ["plan", *digits_files, "--private-input", value])
    assert result.exit_code == 2 and re.search(match, " ".join(result.output.split())), \
        result.output


# ---- constraints that no plan can meet ------------------------------------------------------
def test_device_memory_too_small_names_the_least_that_would_do(graphs):
    profile = graphs["digits_cnn"]
    sc = zoo_scenario(profile, LAN)
    spec = 4
    private = expected_private(profile, spec)
    problem, side = build(sc, Route((0, 1), ("phone", "e1")))
    labels = [0 if n in private or v < problem.n_inputs else 1
              for v, n in enumerate(problem.names)]
    floor = memory_use(problem, side, labels)[0]  # the device runs the prefix alone
    tight = zoo_scenario(profile, LAN, device_memory=int(floor) - 1)
    assert plan(tight).assignment["conv1"] != "device"  # without privacy it fits
    with pytest.raises(InfeasibleError, match=(
            rf"private_input {spec} cannot be met: the device must hold the input and run "
            rf"conv1, relu1, conv2, relu2, {floor:.0f} bytes .*'phone' has memory_bytes="
            rf"{int(floor) - 1}; the smallest device memory that would do is {floor:.0f} bytes$")):
        plan(tight, constraints=Constraints(private_input=spec))
    exact = plan(zoo_scenario(profile, LAN, device_memory=int(math.ceil(floor))),
                 constraints=Constraints(private_input=spec))  # and that much does
    assert {n for n, t in exact.assignment.items() if t == "device"} == private


def test_memory_with_other_constraints_gives_true_bounds(graphs):
    profile = graphs["digits_cnn"]
    sc = zoo_scenario(profile, LAN, device_memory=1000)  # holds the input, not the prefix
    c = Constraints(private_input=2, max_bytes={"device-edge": 100, "device-cloud": 100})
    with pytest.raises(InfeasibleError) as info:
        plan(sc, constraints=c)
    text = str(info.value)
    assert "a lower bound" in text
    enough = float(text.rsplit("and ", 1)[1].split()[0])
    roomy = zoo_scenario(profile, LAN, device_memory=int(enough))
    assert plan(roomy, constraints=c).private == ("conv1", "relu1")


@pytest.mark.parametrize("extra,words", [
    ({"skip_tiers": ("device",)}, "skip_tiers device, private_input 2"),
    ({"pin": {"relu1": "edge"}}, "pin relu1=edge, private_input 2"),
    ({"forbid": (("conv1", "device"),)}, "forbid conv1=device, private_input 2"),
])
def test_contradicting_constraints_are_named(graphs, extra, words):
    sc = zoo_scenario(graphs["digits_cnn"], LAN)
    with pytest.raises(InfeasibleError, match=rf"cannot all hold: {words} \(private_input 2 "
                                              r"keeps the input and conv1, relu1 on the device\)"):
        plan(sc, constraints=Constraints(private_input=2, max_seconds={"edge": 1.0}, **extra))


def test_bad_values_are_refused():
    sc = three_tiers(0)
    for value, match in ((True, "must be a whole number N >= 0"), (" ", "or a node name"),
                         (8, r"out of range: give N in 0..7"), ("zz", "unknown node 'zz'")):
        with pytest.raises(PrivateInputError, match=match):
            plan(sc, constraints=Constraints(private_input=value))
        with pytest.raises(PrivateInputError, match=match):
            dataclasses.replace(sc, private_input=value)
