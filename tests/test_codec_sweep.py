"""The joint cut+codec plan across bandwidths, the input cut in calibration, the photos data,
and what a plan made under a private input keeps to."""
import json
import math

import pytest
import torch

from tiercut.cli.calibrate import _cuts
from tiercut.codecs.calibrate import CalibrationError
from tiercut.planner import Constraints, baseline
from tiercut.planner.codec_sweep import input_to_top, sweep_with_codecs
from tiercut.planner.compress import plan_with_codecs
from tiercut.planner.scenario import ScenarioError
from tiercut.planner.table import with_device_bandwidth
from tiercut.runtime.stageplan import PlanError, StagePlan

from test_calibrate import scenario, toy_table


def _key(jp):
    return (jp.plan.route, tuple(sorted(jp.plan.assignment.items())),
            tuple(h.codec for h in jp.plan.hops))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tiers", [2, 3])
def test_each_regime_is_the_joint_optimum_inside_it_and_changes_at_its_start(seed, tiers):
    sc = scenario(seed, 6, seed % 2 == 0, tiers)
    table = toy_table(sc, seed)
    sweep = sweep_with_codecs(sc, table, 0.02, 1e5, 1e9, points=24)
    regimes = sweep.regimes
    assert regimes[0].from_bps == 1e5
    assert all(a.from_bps < b.from_bps for a, b in zip(regimes, regimes[1:]))
    assert all(_key(a.plan) != _key(b.plan) for a, b in zip(regimes, regimes[1:]))
    ends = [r.from_bps for r in regimes[1:]] + [1e9]
    for r, end in zip(regimes, ends):
        inside = math.sqrt(r.from_bps * end)  # a bandwidth within the regime
        here = plan_with_codecs(with_device_bandwidth(sc, inside), table, 0.02)
        assert _key(here) == _key(r.plan)  # solved afresh inside the regime: the same plan
        same = plan_with_codecs(with_device_bandwidth(sc, r.from_bps), table, 0.02)
        assert _key(same) == _key(r.plan)
    for prev, r in zip(regimes, regimes[1:]):  # just below a start, the previous plan holds
        below = plan_with_codecs(with_device_bandwidth(sc, r.from_bps / 1.002), table, 0.02)
        assert _key(below) == _key(prev.plan)
    # the curves: the joint optimum never above either baseline, and the baselines as solved
    for b, joint, dev, top in zip(sweep.grid, sweep.joint_s, *sweep.baselines.values()):
        s = with_device_bandwidth(sc, b)
        assert dev == pytest.approx(baseline(s, sc.tiers[0]).total_s)
        assert top == pytest.approx(input_to_top(s, table, 0.02).plan.total_s)
        assert joint <= min(dev, top) + 1e-12


def test_a_slow_link_gives_the_device_and_a_fast_one_the_cloud():
    sc = scenario(0, 6, True, 2)
    table = toy_table(sc, 0)
    sweep = sweep_with_codecs(sc, table, 0.5, 1e3, 1e11, points=16)
    first, last = sweep.regimes[0].plan.plan, sweep.regimes[-1].plan.plan
    assert set(first.assignment.values()) == {"device"}
    assert "cloud" in set(last.assignment.values())


def test_a_private_input_holds_in_every_regime():
    sc = scenario(1, 6, True, 3)
    table = toy_table(sc, 1)
    sweep = sweep_with_codecs(sc, table, 0.5, 1e4, 1e10, Constraints(private_input=2), points=12)
    for r in sweep.regimes:
        assert {r.plan.plan.assignment[v] for v in ("n0", "n1")} == {"device"}


@pytest.mark.parametrize("low, high, points", [(0, 1e6, 8), (1e6, 1e5, 8), (1e5, math.inf, 8),
                                               (1e5, 1e6, 1), (1e5, 1e6, 2.5), (1e5, 1e6, True)])
def test_bad_sweeps_are_refused(low, high, points):
    sc = scenario(0, 4, True, 2)
    with pytest.raises(ScenarioError, match="bandwidth range|points >= 2"):
        sweep_with_codecs(sc, toy_table(sc, 0), 0.01, low, high, points=points)


# ---- --cuts --------------------------------------------------------------------------------
def test_cuts_flag_takes_all_a_count_or_positions_with_the_input():
    assert _cuts("all") == ("all", None)
    assert _cuts("6") == (6, None)
    assert _cuts("input") == ("all", [0])
    assert _cuts("input, 5,9") == ("all", [0, 5, 9])
    for bad in ("0", "-2", "x", "input,a", ""):
        with pytest.raises(CalibrationError, match="--cuts"):
            _cuts(bad)


def test_cli_sweep_with_codecs_prints_regimes_and_writes_the_plot(tmp_path):
    from typer.testing import CliRunner

    from tiercut.cli import app

    table = tmp_path / "codecs.json"
    run = CliRunner().invoke(app, ["calibrate", "--model", "digits_cnn", "--data", "digits",
                                   "--cuts", "input,3", "--codecs", "u8@0:16,q8", "--samples",
                                   "40", "-o", str(table)])
    assert run.exit_code == 0, run.output
    assert [c["position"] for c in json.loads(table.read_text())["cuts"]] == [0, 3]
    png = tmp_path / "sweep.png"
    run = CliRunner().invoke(app, [
        "plan", "--model", "digits_cnn", "--tier", "device=x0.1", "--tier", "cloud=x1",
        "--link", "device-cloud=10mbit,20ms", "--codecs", str(table), "--max-loss", "0.05",
        "--sweep-bandwidth", "10kbit..1gbit", "--plot", str(png)], env={"COLUMNS": "150"})
    assert run.exit_code == 0, run.output
    assert "joint cut and codec" in run.output and "regimes over" in run.output
    assert png.stat().st_size > 10_000


# ---- a plan made under a private input -----------------------------------------------------
def test_a_plan_that_moves_a_private_node_off_the_device_is_refused(tmp_path):
    from typer.testing import CliRunner

    from tiercut.cli import app

    run = CliRunner().invoke(app, [
        "plan", "--model", "digits_cnn", "--tier", "device=x0.1", "--tier", "cloud=x5",
        "--link", "device-cloud=100mbit,5ms", "--private-input", "2", "--json"])
    assert run.exit_code == 0, run.output
    data = json.loads(run.output)
    assert data["baselines_breaking_private_input"] == ["all-cloud"]
    private = data["private"]
    assert len(private) >= 2
    StagePlan.from_dict(data)  # as planned: accepted
    edited = {**data, "assignment": {**data["assignment"], private[0]: "cloud"},
              "route": {"tiers": [0, 1], "hosts": list(data["hosts"].values())}}
    with pytest.raises(PlanError, match=f"keeps node '{private[0]}' on the device"):
        StagePlan.from_dict(edited)
    with pytest.raises(PlanError, match="'private' must be a list of node names"):
        StagePlan.from_dict({**data, "private": "x"})
    with pytest.raises(PlanError, match="names node 'nope'"):
        StagePlan.from_dict({**data, "private": ["nope"]})


# ---- photos --------------------------------------------------------------------------------
def test_photos_are_real_8_bit_frames_at_the_size_asked():
    pytest.importorskip("skimage")
    from tiercut.zoo.photos import PhotosError, photo_frames

    x = photo_frames(32, 48, crops=2, names=("astronaut", "camera"))
    assert x.shape == (4, 3, 32, 48) and x.dtype == torch.float32
    assert torch.equal(torch.round(x * 255) / 255, x)  # k / 255 exactly: u8 carries it losslessly
    assert not torch.equal(x[0], x[1]) and x.std() > 0.1
    assert torch.equal(x[2, 0], x[2, 1])  # the grey photo on three channels
    for bad in ({"height": 4}, {"width": 10_000}, {"crops": 6}, {"crops": 0}):
        with pytest.raises(PhotosError):
            photo_frames(**{"height": 32, "width": 32, **bad})


def test_photos_dataset_fits_image_models_only():
    from tiercut import zoo
    from tiercut.cli.calibrate import load_dataset

    with pytest.raises(CalibrationError, match=r"gives \(N, 3, H, W\) frames; model 'digits_cnn'"):
        load_dataset("photos", zoo.entry("digits_cnn"))
