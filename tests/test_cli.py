"""The command line, run in-process with typer's runner."""
import json

from typer.testing import CliRunner

from tiercut.cli import app

runner = CliRunner()


def test_profile_a_user_model_then_show_and_plot(tmp_path):
    out = tmp_path / "user.json"
    result = runner.invoke(app, ["profile", "userzoo:tiny_cnn", "-o", str(out), "--repeat", "3",
                                 "--threads", "1", "--batch", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["format"] == "tiercut-profile/1" and data["batch"] == 2
    assert data["inputs"][0]["shape"] == [2, 3, 16, 16]
    assert [n["op"] for n in data["nodes"]][:2] == ["conv2d", "relu"]
    assert data["settings"]["threads"] == 1
    png = tmp_path / "user.png"
    result = runner.invoke(app, ["show", str(out), "--top", "3", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "slowest 3" in result.output and png.stat().st_size > 1000


def test_unknown_model_lists_the_valid_ones(tmp_path):
    result = runner.invoke(app, ["profile", "resnet1000", "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "unknown model 'resnet1000'" in result.output and "mobilenet_v2" in result.output


def test_factory_path_that_does_not_import(tmp_path):
    result = runner.invoke(app, ["profile", "nosuchpkg.models:make", "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "cannot load model factory 'nosuchpkg.models:make'" in result.output


def test_bad_input_shape_flag(tmp_path):
    result = runner.invoke(app, ["profile", "userzoo:tiny_cnn", "--input-shape", "1,three",
                                 "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "not a list of integers" in result.output


def test_show_a_malformed_profile(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "tiercut-profile/1", "model": "m", "host": {},
                               "input_bytes": 4, "outputs": ["a"],
                               "nodes": [{"name": "a", "inputs": [], "latency_s": -1,
                                          "output_bytes": 4}]}))
    result = runner.invoke(app, ["show", str(bad)])
    assert result.exit_code == 2 and "'latency_s' is negative" in result.output
