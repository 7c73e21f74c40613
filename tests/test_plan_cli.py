"""`tiercut plan` end to end: profiles on disk, scenario files, flags, JSON and sweeps."""
import json

import pytest
import torch
from typer.testing import CliRunner

from tiercut import ProfileSettings, profile_model
from tiercut.cli import app
from tiercut.measure.predict import scale_profile

import userzoo

runner = CliRunner()


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles")
    here = profile_model(userzoo.tiny_cnn(), torch.randn(1, 3, 16, 16), name="tiny",
                         settings=ProfileSettings(repeat=3, warmup=1))
    paths = {}
    for name, speed in (("phone", 0.1), ("e1", 1.0), ("e2", 2.0), ("c1", 5.0)):
        paths[name] = folder / f"{name}.json"
        scale_profile(here, speed, name).save(paths[name])
    return folder, paths, here


def test_plan_from_flags_as_json(profiles):
    _, p, _ = profiles
    result = runner.invoke(app, [
        "plan", "--tier", f"device={p['phone']}", "--tier", f"edge={p['e1']},{p['e2']}",
        "--tier", f"cloud={p['c1']}", "--link", "device-edge=10mbit,20ms",
        "--link", "edge-cloud=100mbit,10ms", "--link", "phone-c1=1.6mbit,66.7ms", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= {"predicted", "assignment", "hosts", "bytes", "method", "baselines"}
    assert data["predicted"]["total_s"] <= min(data["baselines"].values()) * (1 + 1e-12)
    assert set(data["hosts"]) == {"device", "edge", "cloud"}
    assert data["method"] in ("chain", "mincut", "milp")


def test_plan_from_a_scenario_file_with_constraints(profiles, tmp_path):
    folder, p, here = profiles
    yaml_text = f"""
tiers: [device, edge]
hosts:
  - {{name: phone, tier: device, profile: {p['phone']}}}
  - {{name: e1, tier: edge, profile: {p['e1']}, load: 2.0}}
links:
  device-edge: 50mbit,5ms
"""
    path = tmp_path / "s.yaml"
    path.write_text(yaml_text)
    last = here.nodes[-1].name
    result = runner.invoke(app, ["plan", "--scenario", str(path), "--pin", f"{last}=device", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["assignment"][last] == "device"
    human = runner.invoke(app, ["plan", "--scenario", str(path)])
    assert human.exit_code == 0 and "predicted total" in human.output and "all-device" in human.output


def test_plan_errors_name_the_problem(profiles):
    _, p, _ = profiles
    base = ["plan", "--tier", f"device={p['phone']}", "--tier", f"edge={p['e1']}"]
    missing = runner.invoke(app, base)
    assert missing.exit_code == 2 and "no link for the hop phone (device) -> e1 (edge)" in missing.output
    unknown = runner.invoke(app, [*base, "--link", "device-edge=1mbit", "--pin", "nope=edge"])
    assert unknown.exit_code == 2 and "unknown node 'nope'" in unknown.output
    zero = runner.invoke(app, [*base, "--link", "device-edge=0mbit,1ms"])
    assert zero.exit_code == 2 and "bandwidth must be a finite number > 0" in zero.output
    badlink = runner.invoke(app, [*base, "--link", "device-fog=1mbit"])
    assert badlink.exit_code == 2 and "must be A-B where A and B are tiers or hosts" in badlink.output


def test_sweep_prints_breakpoints_and_draws(profiles, tmp_path):
    _, p, _ = profiles
    png = tmp_path / "sweep.png"
    result = runner.invoke(app, ["plan", "--tier", f"device={p['phone']}", "--tier", f"edge={p['e1']}",
                                 "--link", "device-edge=10mbit,5ms", "--sweep-bandwidth",
                                 "0.1mbit..1gbit", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "decision table" in result.output and png.stat().st_size > 1000


def test_throughput_and_tier_caps_from_flags(profiles):
    _, p, here = profiles
    base = ["plan", "--tier", f"device={p['phone']}", "--tier", f"edge={p['e1']},{p['e2']}",
            "--tier", f"cloud={p['c1']}", "--link", "device-edge=10mbit,20ms",
            "--link", "edge-cloud=100mbit,10ms", "--link", "device-cloud=2mbit,40ms"]
    stream = runner.invoke(app, [*base, "--objective", "throughput", "--json"])
    assert stream.exit_code == 0, stream.output
    data = json.loads(stream.output)
    assert data["method"] == "milp" and data["objective"] == "throughput"
    assert data["predicted"]["requests_per_s"] == pytest.approx(1 / data["value"])
    human = runner.invoke(app, [*base, "--objective", "throughput"])
    assert human.exit_code == 0 and "requests/s" in human.output

    capped = runner.invoke(app, [*base, "--max-seconds", "device=0", "--never-host", "e2",
                                 "--json"])
    assert capped.exit_code == 0, capped.output
    data = json.loads(capped.output)
    assert "device" not in data["assignment"].values() and data["hosts"]["edge"] != "e2"
    share = runner.invoke(app, [*base, "--max-seconds", "device=0%", "--only-host", "phone",
                                "--only-host", "c1", "--json"])
    assert share.exit_code == 0, share.output
    assert set(json.loads(share.output)["assignment"].values()) == {"cloud"}
    for bad in ("device=soon", "device=150%", "device=-1"):
        result = runner.invoke(app, [*base, "--max-seconds", bad])
        assert result.exit_code == 2 and "--max-seconds" in result.output, (bad, result.output)


def test_a_skipped_tier_needs_no_link(profiles):
    """--skip-tier cloud: the plan and its baselines need no link to the cloud (issue 23)."""
    _, p, _ = profiles
    args = ["plan", "--tier", f"device={p['phone']}", "--tier", f"edge={p['e1']}",
            "--tier", f"cloud={p['c1']}", "--link", "device-edge=10mbit,20ms"]
    result = runner.invoke(app, [*args, "--skip-tier", "cloud", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["baselines"]) == {"all-device", "all-edge"}
    assert "cloud" not in data["assignment"].values()
    result = runner.invoke(app, [*args, "--skip-tier", "cloud"])
    assert result.exit_code == 0, result.output
    assert "all-edge" in result.output and "device-cloud" not in result.output
    # without the skip the cloud is a candidate, and its missing link is still named
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "device-cloud" in result.output
