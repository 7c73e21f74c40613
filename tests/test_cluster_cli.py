"""`tiercut cluster plan` on a cluster file and a reference profile: a table, JSON, refusals."""
import json

from typer.testing import CliRunner

from tiercut.cli import app
from tiercut.measure.profile import NodeProfile, Profile

runner = CliRunner()


def reference(path):
    nodes = tuple(NodeProfile(f"n{i}", (f"n{i - 1}",) if i else (), latency_s=0.004,
                              output_bytes=20_000, param_bytes=10_000) for i in range(6))
    Profile(model="toy", host={"name": "ref"}, input_bytes=50_000, outputs=("n5",),
            nodes=nodes).save(path)


def test_cluster_plan_prints_json_and_the_marginal_nodes(tmp_path):
    reference(tmp_path / "ref.json")
    (tmp_path / "c.yaml").write_text(
        "reference: ref.json\nnodes:\n  - {name: a, speed: 1}\n  - {name: b, speed: 2}\n"
        "  - {name: c, speed: 0.5}\nlinks:\n  default: 100mbit,1ms\n")
    result = runner.invoke(app, ["cluster", "plan", str(tmp_path / "c.yaml"), "--method",
                                 "exact", "--json", "--marginal"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == "toy" and data["throughput_fps"] > 0
    assert [r["k"] for r in data["marginal"]] == [1, 2, 3]
    result = runner.invoke(app, ["cluster", "plan", str(tmp_path / "c.yaml"),
                                 "--latency-cap", "80ms"])
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.output


def test_cluster_plan_refuses_bad_input_with_the_reason(tmp_path):
    reference(tmp_path / "ref.json")
    (tmp_path / "c.yaml").write_text(
        "reference: ref.json\nnodes:\n  - {name: a}\n  - {name: b}\nlinks:\n  a-q: 1mbit\n")
    result = runner.invoke(app, ["cluster", "plan", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2
    assert "unknown node 'q'" in result.output


def test_cluster_testbed_refuses_bad_caps_before_starting_anything():
    for caps, said in (("0.5,x", "give fractions of a CPU"), ("0.5,1.5", "must be in (0, 1]"),
                       ("0.5", "at least 2 nodes")):
        result = runner.invoke(app, ["cluster", "testbed", "--caps", caps])
        assert result.exit_code != 0 and said in result.output, result.output


def test_cluster_plan_divide_traces_the_model_and_needs_one(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "nodes:\n  - {name: a, speed: 1}\n  - {name: b, speed: 1}\nlinks:\n"
        "  default: 10gbit,0.1ms\n")
    result = runner.invoke(app, ["cluster", "plan", str(tmp_path / "c.yaml"), "--divide"])
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(app, ["cluster", "plan", str(tmp_path / "c.yaml"), "--model",
                                 "digits_cnn", "--divide", "--method", "exact", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == "digits_cnn" and all("division" in s for s in data["stages"])
