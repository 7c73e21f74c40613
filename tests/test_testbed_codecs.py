"""Codec plans on the real testbed path: tier servers in their own processes, every hop through
the shaping proxy, the digits CNN with a codec table calibrated here on a few real samples."""
import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from tiercut import trace
from tiercut.cli import testbed as testbed_cli
from tiercut.codecs.calibrate import CalibrationError, calibrate
from tiercut.planner import Constraints
from tiercut.testbed import Setting, run_testbed
from tiercut.testbed.joint import LABELS, BoundError, JointSetup, rows
from tiercut.zoo import entry
from tiercut.zoo.digits import digits_data

FULL_SPEED = {"device": 1.0, "edge": 1.0, "cloud": 1.0}
# a slow uplink, so that a 4x smaller cut pays; the head (fc2) may not run on the device, so
# the plans cross a link at all (the digits CNN's whole compute is far less than a round trip)
SLOW = [Setting("slow", 1e6, 0.002)]
NO_HEAD = Constraints(forbid=(("fc2", "device"),))


@pytest.fixture(scope="module")
def digits():
    zoo = entry("digits_cnn")
    graph = trace(zoo.build(), zoo.example_inputs(), name="digits_cnn")
    _, _, x, y = digits_data()
    return graph, x, y


def _run(setup, x):
    return run_testbed("digits_cnn", SLOW, requests=2, min_requests=1, budget_s=2.0,
                       caps=FULL_SPEED, profile_repeat=2, log=lambda _: None, joint=setup,
                       inputs=(x[-1:],))


def test_a_joint_codec_plan_runs_through_servers_and_links_within_its_bound(digits):
    graph, x, y = digits
    table = calibrate(graph, (x[:60],), y[:60], "top1", ["q8"], model="digits_cnn",
                      positions=[0, 5, 9])
    # the codec's seconds as calibrated (host={}: not scaled to the hosts' speeds): on a model
    # this small a scaled encode can outweigh what q8 saves, and this test is about the run
    table = dataclasses.replace(table, host={})
    runs = _run(JointSetup(table, 0.05, NO_HEAD), x)
    assert [r.label for r in runs] == list(LABELS)
    by = {r["label"]: r for r in rows(runs)}
    joint = by["joint"]
    assert joint["codec"] == "q8" and joint["cut"].startswith("cut ")
    assert joint["bound"] == 0.0 and joint["seen_loss"] == 0.0  # top-1 agreed on every answer
    lossless = by["best lossless split"]
    assert lossless["codec"] == "raw" and lossless["bound"] is None  # checked bit for bit
    # q8 sends less than fp32 on the wire (a quarter, plus the frame's header)
    raw = next(r for r in runs if r.label == "joint").plan.hops[0].bytes
    assert joint["measured_bytes"] < raw
    assert by["all-device"]["measured_bytes"] == 0 and by["all-device"]["placement"] == "device:11"
    assert by["input to cloud"]["placement"] == "cloud:11"
    assert all(r["measured_ms"] > 0 and r["fallbacks"] == 0 for r in by.values())


def test_a_bound_tighter_than_the_codec_fails_loudly(digits):
    graph, x, _ = digits
    table = calibrate(graph, (x[:30],), None, "cosine", ["q2"], model="digits_cnn",
                      positions=[9])
    (cut,) = table.cuts
    # claim q2 is exact: the run-time check must catch that its answer is not
    exact = dataclasses.replace(cut.codecs[0], loss=0.0, worst=1.0)
    # and plan with its seconds as calibrated (host={}: not scaled to the hosts' speeds), so
    # that the joint plan takes q2 whatever this machine's speed makes of its encode
    lying = dataclasses.replace(table, host={},
                                cuts=(dataclasses.replace(cut, codecs=(exact,)),))
    # the cut itself is fixed (the first 9 nodes on the device, the rest off it), so that the
    # profiles this run measures (slower when the machine is busy) cannot move the plan
    names = [n.name for n in graph.compute_nodes]
    at_nine = Constraints(pin={v: "device" for v in names[:9]},
                          forbid=tuple((v, "device") for v in names[9:]))
    with pytest.raises(BoundError, match=r"joint under slow: q2 at cut 9 \(fc1\) gave an "
                                         r"answer with cosine loss .* over its calibrated bound "
                                         r"0\.000000"):
        _run(JointSetup(lying, 0.0, at_nine), x)


def _cli(*args: str):
    app = typer.Typer()
    app.command()(testbed_cli.testbed_cmd)
    return CliRunner().invoke(app, list(args))


def test_the_command_refuses_a_table_of_another_model_and_a_bad_max_loss(digits, tmp_path):
    graph, x, y = digits
    path = tmp_path / "digits.json"
    calibrate(graph, (x[:20],), y[:20], "top1", ["q8"], model="digits_cnn",
              positions=[5]).save(path)
    other = _cli("--model", "squeezenet1_1", "--codecs", str(path))
    assert other.exit_code != 0
    assert "'digits_cnn'" in other.output and "'squeezenet1_1'" in other.output
    for bad in ("1.5", "-0.1", "nan"):
        refused = _cli("--model", "digits_cnn", "--codecs", str(path), "--max-loss", bad)
        assert refused.exit_code != 0 and f"max loss {float(bad)!r} is outside [0, 1]" in \
            refused.output.replace("\n", " ")
    with pytest.raises(CalibrationError, match=r"outside \[0, 2\] for metric cosine"):
        JointSetup(calibrate(graph, (x[:5],), None, "cosine", ["q8"], model="digits_cnn",
                             positions=[5]), 3.0)
    alone = _cli("--model", "digits_cnn", "--private-input", "2")
    assert alone.exit_code != 0 and "needs --codecs" in alone.output
