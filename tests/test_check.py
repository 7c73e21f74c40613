"""tiercut check: capture, the candidate cuts, split against whole, and the report."""
from collections import OrderedDict

import torch
from torch import nn
from typer.testing import CliRunner

from tiercut.cli.main import app
from tiercut.modelcheck import check_model, render
from tiercut.modelcheck.check import compare_outputs
from tiercut.zoo import resolve

runner = CliRunner()


class DataDependent(nn.Module):
    """A block whose control flow reads the values: fx and export both stop at it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.post = Keep()

    def forward(self, x):
        return self.post(self.conv(x))


class Keep(nn.Module):
    def forward(self, y):
        if y.sum() > 0:  # value-dependent: not traceable
            return y.relu()
        return -y


def test_a_zoo_model_splits_exactly_at_every_candidate_cut():
    e = resolve("squeezenet1_1")
    r = check_model(e.build(), e.example_inputs(), "squeezenet1_1", max_cuts=8)
    assert r.ok and r.method == "fx" and r.nodes > 50
    assert len(r.cuts) == 8 and all(c.status == "exact" for c in r.cuts)
    assert any(c.label.startswith("planner") for c in r.cuts)
    assert any(c.label.startswith("prefix") for c in r.cuts)
    assert len({c.device_nodes for c in r.cuts}) == 8  # no cut tried twice
    text = render(r)
    assert "8 cuts: 8 exact, 0 close, 0 failed" in text


def test_a_capture_failure_is_reported_with_its_reason_and_a_leaf_fixes_it():
    torch.manual_seed(0)
    model, x = DataDependent().eval(), torch.randn(1, 3, 8, 8)
    bad = check_model(model, x, "dd")
    assert not bad.ok and not bad.method and bad.error
    assert "capture FAILED" in render(bad)
    good = check_model(model, x, "dd", leaf_modules=("post",))
    assert good.ok and all(c.status == "exact" for c in good.cuts)


def test_outputs_are_compared_by_type_structure_and_value():
    t = torch.arange(6.0)
    assert compare_outputs({"a": t}, {"a": t.clone()}, "c", 1, 1e-5).status == "exact"
    od = compare_outputs(OrderedDict(a=t), {"a": t}, "c", 1, 1e-5)
    assert od.status == "failed" and "dict" in od.error and "OrderedDict" in od.error
    near = compare_outputs((t,), (t * (1 + 1e-7),), "c", 1, 1e-5)
    assert near.status == "close" and 0 < near.max_rel <= 1e-5
    far = compare_outputs((t,), (t + 1,), "c", 1, 1e-5)
    assert far.status == "failed" and "largest difference" in far.error
    shape = compare_outputs((t,), (t[:3],), "c", 1, 1e-5)
    assert shape.status == "failed" and "output 0" in shape.error


def test_the_command_exits_0_when_all_work_and_1_when_capture_fails():
    ok = runner.invoke(app, ["check", "userzoo:tiny_cnn", "--max-cuts", "3"])
    assert ok.exit_code == 0, ok.output
    assert "3 cuts: 3 exact" in ok.output
    bad = runner.invoke(app, ["check", "test_check:DataDependent", "--input-shape", "1,3,8,8"])
    assert bad.exit_code == 1 and "capture FAILED" in bad.output
    leaf = runner.invoke(app, ["check", "test_check:DataDependent", "--input-shape", "1,3,8,8",
                               "--leaf", "post"])
    assert leaf.exit_code == 0, leaf.output
    unknown = runner.invoke(app, ["check", "no_such_model"])
    assert unknown.exit_code == 2 and "unknown model" in unknown.output


def _onnx_file(path):
    """x[N, 8] -> MatMul(W) -> Relu -> MatMul(V) -> y: a batch left symbolic, as real files do."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W")
    v = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "V")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "V"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [w, v])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_an_onnx_file_is_profiled_planned_and_checked_from_the_command_line(tmp_path):
    f = _onnx_file(tmp_path / "tiny.onnx")
    prof = tmp_path / "p.json"
    bare = runner.invoke(app, ["check", f])
    assert bare.exit_code == 1 and "symbolic" in bare.output
    ok = runner.invoke(app, ["profile", f, "--input-shape", "2,8", "-o", str(prof),
                             "--repeat", "2"])
    assert ok.exit_code == 0, ok.output
    assert "3 nodes (ONNX Runtime)" in " ".join(ok.output.split()) and prof.exists()
    planned = runner.invoke(app, ["plan", "--model", f, "--input", "x:2x8:float32",
                                  "--link", "device-edge=10mbit,5ms", "--skip-tier", "cloud"])
    assert planned.exit_code == 0, planned.output
    checked = runner.invoke(app, ["check", f, "--input", "x:2x8:float32"])
    assert checked.exit_code == 0, checked.output
    assert "captured by onnx, 3 nodes" in checked.output and "0 failed" in checked.output
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    bad = runner.invoke(app, ["profile", str(broken), "-o", str(tmp_path / "b.json")])
    assert bad.exit_code == 2 and "broken.onnx" in " ".join(bad.output.split())


def leafy():
    """A user's factory declaring the block to keep whole, for every tier that traces it."""
    torch.manual_seed(0)
    return DataDependent()


leafy.input_shape = (1, 3, 8, 8)
leafy.leaf_modules = ("post",)


def test_a_factorys_leaf_modules_are_used_by_profile_plan_and_the_servers(tmp_path):
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import serve_in_thread
    from tiercut.runtime.stageplan import StagePlan, model_graph

    spec = "test_check:leafy"
    prof = runner.invoke(app, ["profile", spec, "-o", str(tmp_path / "p.json"), "--repeat", "1"])
    assert prof.exit_code == 0, prof.output
    assert runner.invoke(app, ["check", spec]).exit_code == 0
    graph = model_graph(spec)
    assert "post" in [n.name for n in graph.compute_nodes]  # one node, never traced into
    names = [n.name for n in graph.compute_nodes]
    plan = StagePlan.from_assignment(spec, {n: int(n == "post") for n in names},
                                     ("device", "edge"))
    e = resolve(spec)
    model, x = e.build(), e.example_inputs()
    with serve_in_thread([spec], threads=1) as edge:
        with SplitClient(plan, [edge.endpoint]) as client:
            out, m = client.infer(*x)
    assert not m.fallback and torch.equal(out, model(*x))
