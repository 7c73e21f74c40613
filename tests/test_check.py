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
