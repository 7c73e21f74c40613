"""`tiercut testbed --divide N`: a run of layers tiled across N edge servers (their own
processes, behind an emulated LAN), measured beside all-device and the best undivided plan."""
import json
import math

import pytest
import typer
from typer.testing import CliRunner

from tiercut.cli import testbed as testbed_cli
from tiercut.testbed.divided import TOLERANCE, run_divided_testbed

pytestmark = pytest.mark.slow


def _cli(*args: str):
    app = typer.Typer()
    app.command()(testbed_cli.testbed_cmd)
    return CliRunner().invoke(app, list(args))


def test_a_divided_plan_runs_through_its_coordinator_and_matches_the_whole_model(tmp_path):
    out = tmp_path / "divided.json"
    result = _cli("--model", "resnet18", "--divide", "3", "--requests", "2", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {r["plan"]: r for r in data["rows"]}
    assert {"all-device", "undivided"} <= set(rows)
    division = data["division"]
    assert division is not None, "three edge servers at 0.4 CPU each should divide resnet18"
    assert "divided" in rows and "divided" in result.output
    assert division["coordinator"] in division["hosts"] and len(division["hosts"]) >= 2
    for r in rows.values():  # every answer was checked against the whole model's as it came
        assert r["requests"] == 2 and r["measured_ms"] > 0 and math.isfinite(r["error"])
        assert r["worst_error"] <= TOLERANCE
    assert rows["undivided"]["worst_error"] == 0.0 and rows["all-device"]["worst_error"] == 0.0
    # the planner's claim holds on the figures it reports: the divided plan predicts less
    assert rows["divided"]["predicted_ms"] < rows["undivided"]["predicted_ms"]
    assert data["speedup_predicted"] > 1.0 and data["speedup_measured"] > 0


def test_a_divided_testbed_needs_two_edge_servers():
    with pytest.raises(ValueError, match="at least 2 edge servers, got 1"):
        run_divided_testbed("resnet18", nodes=1)
    refused = _cli("--model", "resnet18", "--divide", "1")
    assert refused.exit_code != 0 and "--divide" in refused.output
