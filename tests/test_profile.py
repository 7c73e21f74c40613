"""The tiercut-profile/1 format: round trips, the JSON schema, and clear errors for bad input."""
import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from tiercut.errors import ProfileError
from tiercut.measure.profile import Profile
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.graph.trace import trace

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "profile.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# Three blocks measured by some other tool: no model code, no named model inputs.
from handwritten import CHAIN  # noqa: E402


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return self.fc(y.flatten(1)) + 1


class Other(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def measured() -> Profile:
    return profile_model(Small(), torch.randn(2, 3, 8, 8), "small",
                         ProfileSettings(repeat=3, warmup=1))


def test_measured_profile_round_trips_and_matches_schema(measured: Profile, tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    measured.save(path)
    loaded = Profile.load(path)
    assert loaded == measured
    assert loaded.to_dict() == measured.to_dict()
    VALIDATOR.validate(measured.to_dict())
    VALIDATOR.validate(json.loads(path.read_text()))
    assert measured.model_latency_s > 0 and all(n.latency_s > 0 for n in measured.nodes)
    assert measured.settings["repeat"] == 3 and measured.settings["warmup"] == 1
    assert measured.batch == 2 and measured.predicted is None


def test_hand_written_chain_loads_and_matches_schema(tmp_path: Path) -> None:
    VALIDATOR.validate(CHAIN)
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(CHAIN))
    prof = Profile.load(path)
    assert [n.name for n in prof.nodes] == ["stem", "body", "head"]
    assert prof.nodes[0].inputs == () and prof.nodes[1].inputs == ("stem",)
    assert prof.node("body").latency_spread_s == 0.0011
    assert prof.node("head").op == "" and prof.inputs == () and prof.batch == 1
    assert prof.total_latency_s == pytest.approx(0.0123 + 0.0456 + 0.0021)
    VALIDATOR.validate(prof.to_dict())  # what tiercut writes back is valid too
    assert Profile.from_dict(prof.to_dict()) == prof


def test_unknown_fields_are_ignored() -> None:
    data = copy.deepcopy(CHAIN)
    data["comment"] = "measured with another tool"
    data["nodes"][0]["gpu_latency_s"] = 0.001
    data["inputs"] = [{"name": "image", "bytes": 602112, "shape": [1, 3, 224, 224],
                       "dtype": "float32", "layout": "NCHW"}]
    data["nodes"][0]["inputs"] = ["image"]
    VALIDATOR.validate(data)
    prof = Profile.from_dict(data)
    assert prof.inputs[0].shape == (1, 3, 224, 224)


def test_signature_tells_graphs_apart(measured: Profile) -> None:
    x = torch.randn(2, 3, 8, 8)
    same = Profile.from_graph(trace(Small(), (x,), name="small"))
    other = Profile.from_graph(trace(Other(), (x,), name="other"))
    assert same.signature() == measured.signature()
    assert other.signature() != measured.signature()
    assert Profile.from_dict(CHAIN).signature() != measured.signature()


def _edit(change):
    data = copy.deepcopy(CHAIN)
    change(data)
    return data


def _set_node(i, **fields):
    return lambda d: d["nodes"][i].update(fields)


BAD = {
    "missing top-level field": (lambda d: d.pop("host"), r"missing required field\(s\) 'host'"),
    "node missing latency": (lambda d: d["nodes"][1].pop("latency_s"),
                             r"node 1 \('body'\): missing required field\(s\) 'latency_s'"),
    "negative latency": (_set_node(2, latency_s=-0.5),
                         r"node 'head': 'latency_s' is negative \(-0.5\)"),
    "unknown input": (_set_node(1, inputs=["stme"]), r"node 'body' refers to unknown input 'stme'"),
    "cycle": (lambda d: (_set_node(0, inputs=["body"])(d), _set_node(1, inputs=["stem"])(d)),
              r"cycle: 'stem' reads 'body' reads 'stem'"),
    "out of order": (lambda d: (_set_node(0, inputs=["body"])(d), _set_node(1, inputs=[])(d)),
                     r"node 'stem' reads 'body', which comes later.*topological order"),
    "duplicate names": (_set_node(2, name="body"), r"node name 'body' appears twice"),
    "wrong format": (lambda d: d.update(format="tiercut-profile/2"),
                     r"'format' is 'tiercut-profile/2'; expected 'tiercut-profile/1'"),
    "output not a node": (lambda d: d.update(outputs=["tail"]),
                          r"output 'tail' is not a node"),
    "latency not a number": (_set_node(0, latency_s="12ms"),
                             r"node 'stem': 'latency_s' must be a finite number, got '12ms'"),
    "fractional bytes": (_set_node(0, output_bytes=1.5), r"'output_bytes' must be a finite integer"),
    "empty nodes": (lambda d: d.update(nodes=[]), r"'nodes' is empty"),
    "bad model input": (lambda d: d.update(inputs=[{"name": "x"}]),
                        r"model input 0: missing required field\(s\) 'bytes'"),
    "model input shadows a node": (lambda d: d.update(inputs=[{"name": "stem", "bytes": 4}]),
                                   r"model input 'stem' appears twice"),
    "zero batch": (lambda d: d.update(batch=0), r"'batch' must be >= 1"),
}
# Rules beyond what JSON Schema can say (graph structure); the schema accepts these.
STRUCTURAL = {"unknown input", "cycle", "out of order", "duplicate names", "output not a node",
              "model input shadows a node"}


@pytest.mark.parametrize("case", BAD)
def test_bad_profile_names_the_problem(case: str, tmp_path: Path) -> None:
    change, message = BAD[case]
    data = _edit(change)
    with pytest.raises(ProfileError, match=message):
        Profile.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(path))}: .*{message}"):  # names the file
        Profile.load(path)
    assert VALIDATOR.is_valid(data) == (case in STRUCTURAL)


def test_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text("stem 0.0123 802816\nbody 0.0456 100352\n")
    with pytest.raises(ProfileError, match=r"host\.json: not valid JSON"):
        Profile.load(path)
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ProfileError, match=r"host\.json: not valid JSON"):
        Profile.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ProfileError, match=r"a profile is a JSON object, got list"):
        Profile.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"profile file '.*nowhere\.json' does not exist"):
        Profile.load(tmp_path / "nowhere.json")
