"""ONNX in (issue 23): an ONNX file is checked, read as a Graph, profiled by ONNX Runtime,
planned on, cut into ONNX Runtime stages that equal the whole model at every cut, and served
across two real tier servers."""
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tiercut.errors import GraphError
from tiercut.measure import Profile, ProfileSettings, scale_profile
from tiercut.onnxgraph import MAX_OPSET, MIN_OPSET, OnnxModelError, example_feed, \
    graph_from_onnx, load_onnx
from tiercut.onnxgraph.profile import profile_onnx
from tiercut.onnxgraph.split import run_onnx_stages, run_whole, session, split_onnx
from tiercut.zoo import resolve

pytestmark = pytest.mark.slow


def _export(name, path):
    entry = resolve(name)
    model, x = entry.build(), entry.example_inputs(1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, x, None, dynamo=True, external_data=False,
                                    optimize=True, verbose=False, report=False)
    onnx.save(program.model_proto, str(path))
    return path


def _dag(batch="N", opset=17):
    """A hand-built DAG: conv, a Split whose two outputs go separate ways, a Constant node,
    a second model output taken early, and a Gemm head."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((8 * 6 * 6, 5)).astype(np.float32), "fc")
    bias = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "bias")
    split = numpy_helper.from_array(np.array([4, 4], np.int64), "split")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),  # unnamed nodes get names
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Split", ["r", "split"], ["a", "b"], name="split", axis=1),
        helper.make_node("Constant", [], ["k"], name="k",
                         value=numpy_helper.from_array(np.float32(0.5))),
        helper.make_node("Mul", ["a", "k"], ["am"], name="scale"),
        helper.make_node("Sigmoid", ["b"], ["bs"], name="gate"),
        helper.make_node("Concat", ["am", "bs"], ["cat"], name="cat", axis=1),
        helper.make_node("Flatten", ["cat"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc", "bias"], ["y"], name="head"),
        helper.make_node("ReduceMean", ["r"], ["early"], name="pool", axes=[2, 3],
                         keepdims=0) if opset < 18 else
        helper.make_node("ReduceMax", ["r"], ["early"], name="pool", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "dag", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5]),
         helper.make_tensor_value_info("early", TensorProto.FLOAT, [batch, 8])],
        [w, fc, bias, split])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    return _export("squeezenet1_1", tmp_path_factory.mktemp("onnx") / "squeezenet1_1.onnx")


@pytest.fixture(scope="module")
def dag_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "dag.onnx"
    onnx.save(_dag(batch=2), str(path))
    return path


# --- bad input -------------------------------------------------------------------------------

def test_bad_files_name_the_file_and_the_problem(tmp_path, squeezenet):
    data = squeezenet.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[:len(data) // 3])
    with pytest.raises(OnnxModelError, match=r"cut\.onnx.*(truncated or corrupt|not a valid)"):
        load_onnx(cut)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(OnnxModelError, match=r"garbage\.onnx.*(truncated or corrupt|not an ONNX)"):
        load_onnx(garbage)
    for name, content in [("notes.onnx", b"hello, this is text\n"), ("zip.onnx", b"PK\x03\x04xx"),
                          ("empty.onnx", b"")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(OnnxModelError, match=rf"{name.replace('.', '[.]')}.*not an ONNX"):
            load_onnx(tmp_path / name)
    with pytest.raises(OnnxModelError, match=r"nothere\.onnx' does not exist"):
        load_onnx(tmp_path / "nothere.onnx")
    assert issubclass(OnnxModelError, ValueError)


@pytest.mark.parametrize("opset", [MIN_OPSET - 2, MAX_OPSET + 3])
def test_unsupported_opset_states_the_range(tmp_path, opset):
    model = _dag(batch=2, opset=17)
    model.opset_import[0].version = opset
    path = tmp_path / f"old{opset}.onnx"
    onnx.save(model, str(path))
    with pytest.raises(OnnxModelError, match=rf"old{opset}\.onnx' uses opset {opset} .*"
                                             rf"supported range {MIN_OPSET}\.\.{MAX_OPSET}"):
        load_onnx(path)


def test_missing_external_data_names_the_location(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(_dag(batch=2), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.weights", size_threshold=0)
    assert load_onnx(path).graph.initializer[0].raw_data  # loads with its data
    graph_from_onnx(path).lint()
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(OnnxModelError, match=r"ext\.onnx.*external data file 'ext\.weights'.*"
                                             r"is missing"):
        load_onnx(path)


def test_symbolic_dims_need_input_shapes_and_a_modelproto_works():
    model = _dag(batch="N")
    with pytest.raises(OnnxModelError, match=r"input 'x' \('N', 3, 8, 8\) has symbolic"
                                             r".*input_shapes=\{'x': \(1, 3, 8, 8\)\}"):
        graph_from_onnx(model)
    graph = graph_from_onnx(model, {"x": (2, 3, 8, 8)})
    assert graph.name == "dag" and graph["x"].outputs[0].shape == (2, 3, 8, 8)
    with pytest.raises(OnnxModelError, match=r"does not fit its declared shape"):
        graph_from_onnx(model, {"x": (2, 4, 8, 8)})
    with pytest.raises(OnnxModelError, match=r"names \['z'\], which are not inputs"):
        graph_from_onnx(model, {"z": (1,)})


# --- the graph -------------------------------------------------------------------------------

def _all_values(graph):
    """Every graph node's value as ONNX Runtime computes it in the whole model."""
    source = graph.module
    probe = onnx.ModelProto()
    probe.CopyFrom(source.model)
    names = [v for n in graph.compute_nodes for v in source.values[n.name]]
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.ValueInfoProto(name=v) for v in names if v not in have)
    feed = example_feed(source.model)
    got = dict(zip(names, session(probe).run(names, feed)))
    return {n.name: [got[v] for v in source.values[n.name]] for n in graph.compute_nodes}


@pytest.mark.parametrize("which", ["squeezenet", "dag"])
def test_graph_shapes_bytes_match_onnxruntime(which, squeezenet, dag_file):
    graph = graph_from_onnx(squeezenet if which == "squeezenet" else dag_file)
    graph.lint()
    values = _all_values(graph)
    for node in graph.compute_nodes:
        arrays = values[node.name]
        assert [m.shape for m in node.outputs] == [a.shape for a in arrays], node.name
        assert [m.dtype for m in node.outputs] == [a.dtype.name for a in arrays], node.name
        assert node.output_bytes == sum(a.nbytes for a in arrays), node.name
    model = load_onnx(squeezenet if which == "squeezenet" else dag_file)
    constant_nodes = 4 if which == "dag" else 0  # the Constant node's float32 counts too
    assert graph.param_bytes == constant_nodes + sum(numpy_helper.to_array(t).nbytes for t in
                                                     model.graph.initializer)
    if which == "dag":
        assert len(graph["split"].outputs) == 2  # a node with two used outputs: a tuple value
        assert "k" not in graph.nodes  # the Constant node is a constant, recomputed per stage
        assert graph.outputs == ("head", "pool")
        assert graph["head"].flops == 2 * 2 * 5 * 288 and graph["conv_0"].op == "conv2d"
        assert graph["conv_0"].flops == 2 * (2 * 8 * 6 * 6) * 27
    else:
        convs = [n for n in graph.compute_nodes if n.op == "conv2d"]
        # squeezenet1_1 does ~0.35 GMACs (torchvision's table); convolutions are nearly all
        assert 0.33e9 < sum(n.flops for n in convs) / 2 < 0.37e9


def _every_cut_equals_whole(graph):
    x = list(example_feed(graph.module.model).values())
    whole = run_whole(graph, *x)
    names = [n.name for n in graph.compute_nodes]
    worst = 0.0
    for cut in range(len(names) + 1):
        stages = split_onnx(graph, {n: int(i >= cut) for i, n in enumerate(names)})
        out = run_onnx_stages(graph, stages, *x)
        for got, ref in zip(out, whole):
            assert got.shape == ref.shape and got.dtype == ref.dtype
            worst = max(worst, float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max())))
    assert worst <= 1e-5, worst
    return len(names) + 1


def test_split_equals_whole_at_every_cut(squeezenet, dag_file):
    assert _every_cut_equals_whole(graph_from_onnx(dag_file)) == 10
    assert _every_cut_equals_whole(graph_from_onnx(squeezenet)) == 66


def test_three_stages_and_a_tuple_crossing(dag_file, tmp_path):
    graph = graph_from_onnx(dag_file)
    assignment = {n.name: 0 for n in graph.compute_nodes}
    assignment.update({"scale": 1, "gate": 1, "cat": 2, "flat": 2, "head": 2, "pool": 2})
    stages = split_onnx(graph, assignment)
    assert stages[1].inputs == ("split",) and stages[2].inputs == ("scale", "gate", "relu")
    x = list(example_feed(graph.module.model).values())
    env = {"x": x[0], **stages[0].run({"x": x[0]})}
    assert isinstance(env["split"], tuple) and len(env["split"]) == 2
    out = run_onnx_stages(graph, stages, *x)
    for got, ref in zip(out, run_whole(graph, *x)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    stages[2].save(tmp_path / "stage2.onnx")  # each stage is a plain ONNX model
    onnx.checker.check_model(onnx.load(str(tmp_path / "stage2.onnx")))
    with pytest.raises(GraphError, match=r"input 'x' is \(1, 3, 8, 8\)"):
        stages[0].run({"x": x[0][:1]})


# --- profile, plan, serve --------------------------------------------------------------------

def test_profile_plans_and_serves_across_two_real_servers(squeezenet, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tiercut.cli.main import app
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread, spawn
    from tiercut.runtime.stageplan import StagePlan, example_inputs

    monkeypatch.chdir(squeezenet.parent)  # plan and servers name the model by the same path
    model = squeezenet.name
    profile = profile_onnx(model, ProfileSettings(threads=1, repeat=5, warmup=1))
    graph = graph_from_onnx(model)
    assert [n.name for n in profile.nodes] == [n.name for n in graph.compute_nodes]
    assert profile.model == model and profile.settings["capture"] == "onnx"
    assert profile.host["onnxruntime"] and all(n.latency_s >= 0 for n in profile.nodes)
    # a sanity bound only (medians per node against the median run, on a shared machine)
    assert 0.25 < profile.total_latency_s / profile.model_latency_s < 4
    dev, edge, cloud = tmp_path / "dev.json", tmp_path / "edge.json", tmp_path / "cloud.json"
    scale_profile(profile, 0.05, "phone").save(dev)
    profile.save(edge)
    scale_profile(profile, 20, "dc").save(cloud)
    assert Profile.load(dev).signature() == profile.signature()
    result = CliRunner().invoke(app, [
        "plan", "--tier", f"device={dev}", "--tier", f"edge={edge}", "--tier", f"cloud={cloud}",
        "--link", "device-edge=50mbit,2ms", "--link", "edge-cloud=30mbit,5ms",
        "--link", "device-cloud=5mbit,20ms", "--pin", f"{graph.compute_nodes[3].name}=edge",
        "--json"])
    assert result.exit_code == 0, result.output
    plan = StagePlan.from_json(result.output)
    assert plan.model == model and len(plan.tiers) >= 2, plan.tiers
    if len(plan.tiers) == 2:  # make sure both servers run a stage
        names = [n.name for n in graph.compute_nodes]
        plan = StagePlan.from_assignment(model, {n: min(i // 20, 2) for i, n in
                                                 enumerate(names)}, ("device", "edge", "cloud"))
    x = example_inputs(plan)
    expected = run_whole(graph, x[0].numpy())[0]
    with spawn([model], threads=1) as a, serve_in_thread([model], threads=1) as b:
        endpoints = [a.endpoint, b.endpoint][:plan.stages - 1]
        with SplitClient(plan, endpoints) as client:
            out, m = client.infer(*x)
    assert not m.fallback and len(m.servers) == plan.stages - 1
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000)
    assert float((out.numpy() - expected).__abs__().max()) <= 1e-5 * max(1, abs(expected).max())


def test_serve_refuses_a_bad_onnx_file_at_start(tmp_path):
    from typer.testing import CliRunner

    from tiercut.cli.serve import _app

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model at all")
    result = CliRunner().invoke(_app(), ["serve", "--models", str(bad)])
    assert result.exit_code == 2
    assert "broken.onnx" in result.output and "not an ONNX model" in " ".join(result.output.split())


def test_profile_json_round_trips(dag_file, tmp_path):
    profile = profile_onnx(dag_file, ProfileSettings(threads=1, repeat=3, warmup=1))
    path = tmp_path / "p.json"
    profile.save(path)
    again = Profile.load(path)
    assert again.signature() == profile.signature() and len(again.nodes) == 9
    assert json.loads(path.read_text())["format"] == "tiercut-profile/1"
    assert {n.name for n in again.nodes if n.flops} >= {"conv_0", "head"}


def test_a_file_with_a_symbolic_batch_and_a_fixed_second_input_is_served(tmp_path):
    """Real files leave the batch symbolic and name outputs like Identity_0: a server hosts
    such a file, the plan's input_shape fixes the one symbolic input, and the answer is the
    whole model's."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread
    from tiercut.runtime.stageplan import StagePlan

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="MatMul_0"),
             helper.make_node("Relu", ["h"], ["r"], name="Relu_0"),
             helper.make_node("Add", ["r", "bias"], ["Identity_0"], name="Add_0")]
    g = helper.make_graph(
        nodes, "sym", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
                       helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Identity_0", TensorProto.FLOAT, ["N", 4])], [w])
    path = str(tmp_path / "sym.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    graph = graph_from_onnx(path, {"x": (3, 8)})
    order = [n.name for n in graph.compute_nodes]
    plan = StagePlan.from_assignment(path, {n: i for i, n in enumerate(order)},
                                     ("device", "edge", "cloud"), input_shape=(3, 8))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    bias = rng.standard_normal((1, 4)).astype(np.float32)
    expected = run_whole(graph, x, bias)[0]
    with serve_in_thread([path], threads=1) as a, serve_in_thread([path], threads=1) as b:
        with SplitClient(plan, [a.endpoint, b.endpoint]) as client:
            out, m = client.infer(torch.from_numpy(x), torch.from_numpy(bias))
    assert not m.fallback and len(m.servers) == 2
    assert np.array_equal(out.numpy(), expected)
