"""Profiles for hosts we do not have: speed-factor scaling and the latency regression."""
import dataclasses
import json
import math

import pytest
import torch

import handwritten
from torch import nn

from tiercut.errors import ProfileError
from tiercut.measure.predict import LatencyPredictor, node_features, scale_profile
from tiercut.measure.profile import Profile
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.graph.trace import trace

SETTINGS = ProfileSettings(repeat=5, warmup=2)  # medians that survive a busy machine
X = torch.randn(1, 3, 48, 48)

CHAIN = {**handwritten.CHAIN, "model_latency_s": 0.058}


class CNN(nn.Module):
    def __init__(self, width: int, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), act(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), act(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), act(),
        )
        self.fc = nn.Linear(2 * width * 12 * 12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class MLP(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 48 * 48, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _measure(model: nn.Module, name: str) -> Profile:
    return profile_model(model, X, name, SETTINGS)


@pytest.fixture(scope="module")
def training() -> list[Profile]:
    torch.manual_seed(0)
    return [_measure(CNN(16), "cnn16"), _measure(CNN(48), "cnn48"),
            _measure(MLP(256), "mlp256"), _measure(MLP(1024), "mlp1024")]


@pytest.fixture(scope="module")
def predictor(training: list[Profile]) -> LatencyPredictor:
    return LatencyPredictor.fit(training)


def test_speed_factor_halves_and_doubles_latencies_exactly() -> None:
    measured = Profile.from_dict(CHAIN)
    fast = scale_profile(measured, 2.0, "cloud")
    slow = scale_profile(measured, 0.5, "device")
    for m, f, s in zip(measured.nodes, fast.nodes, slow.nodes):
        assert f.latency_s == m.latency_s / 2 and s.latency_s == m.latency_s * 2
        assert f.latency_spread_s == m.latency_spread_s / 2
        assert (f.name, f.inputs, f.output_bytes) == (m.name, m.inputs, m.output_bytes)
    assert fast.model_latency_s == measured.model_latency_s / 2
    assert slow.total_latency_s == pytest.approx(2 * measured.total_latency_s)
    assert fast.predicted == {"method": "speed-factor", "speed": 2.0, "from_host": "jetson-nano"}
    assert fast.host == {"name": "cloud"} and slow.host == {"name": "device"}
    assert measured.predicted is None  # the source is untouched
    assert Profile.from_dict(json.loads(json.dumps(fast.to_dict()))) == fast


@pytest.mark.parametrize("speed", [0, -2.0, math.nan, math.inf])
def test_bad_speed_is_rejected_naming_the_value(speed: float) -> None:
    with pytest.raises(ValueError, match=f"speed must be a finite number > 0, got {speed!r}"):
        scale_profile(Profile.from_dict(CHAIN), speed, "device")


def test_predicts_a_held_out_model_within_a_factor_of_two(predictor: LatencyPredictor) -> None:
    held_out = _measure(CNN(32), "cnn32")
    predicted = predictor.predict(held_out, host_name="here-predicted")
    ratio = predicted.total_latency_s / held_out.total_latency_s
    assert 0.5 < ratio < 2.0, f"predicted {predicted.total_latency_s:.2e} s, measured " \
                              f"{held_out.total_latency_s:.2e} s"
    assert predicted.signature() == held_out.signature()
    assert [n.op for n in predicted.nodes] == [n.op for n in held_out.nodes]
    assert predicted.predicted == {"method": "regression",
                                   "trained_on": ["cnn16", "cnn48", "mlp256", "mlp1024"],
                                   "host": held_out.host["name"], "pooled_kinds": []}
    assert predicted.host["name"] == "here-predicted"
    assert predicted.model_latency_s is None
    # the biggest convolution costs more than the smallest elementwise op, as measured
    conv = max((n for n in predicted.nodes if n.op == "conv2d"), key=lambda n: n.flops)
    relu = min((n for n in predicted.nodes if n.op == "relu"), key=lambda n: n.output_bytes)
    assert conv.latency_s > relu.latency_s


def test_predicts_a_skeleton_from_the_graph_alone(predictor: LatencyPredictor) -> None:
    skeleton = Profile.from_graph(trace(CNN(32), X, name="cnn32"))
    assert skeleton.total_latency_s == 0
    predicted = predictor.predict(skeleton)
    assert all(n.latency_s > 0 for n in predicted.nodes if n.op in ("conv2d", "linear"))
    assert predicted.host["name"] == predictor.host["name"]
    assert Profile.from_dict(json.loads(json.dumps(predicted.to_dict()))) == predicted


def test_json_round_trip_gives_identical_predictions(predictor: LatencyPredictor,
                                                     training: list[Profile]) -> None:
    loaded = LatencyPredictor.from_dict(json.loads(json.dumps(predictor.to_dict())))
    assert loaded == predictor
    skeleton = Profile.from_graph(trace(CNN(24), X, name="cnn24"))
    assert loaded.predict(skeleton) == predictor.predict(skeleton)
    assert loaded.predict(training[2]) == predictor.predict(training[2])


def test_bad_predictor_json_is_rejected(predictor: LatencyPredictor) -> None:
    data = predictor.to_dict()
    with pytest.raises(ValueError, match="field 'format' is 'nope'"):
        LatencyPredictor.from_dict({**data, "format": "nope"})
    with pytest.raises(ValueError, match="kind 'conv2d': 'coef' must be 4 finite numbers >= 0"):
        LatencyPredictor.from_dict({**data, "kinds": {**data["kinds"],
                                                      "conv2d": {"coef": [1, -1, 0, 0]}}})


def test_fitting_on_profiles_from_two_hosts_names_both(training: list[Profile]) -> None:
    other = dataclasses.replace(training[1], host={**training[1].host, "name": "edge-box",
                                                   "cpu": "ARM Cortex-A76"})
    here = training[0].host["name"]
    with pytest.raises(ProfileError, match=rf"different hosts: 'cnn16' from host '{here}'.*"
                                           r"'cnn48' from host 'edge-box' \(cpu 'ARM Cortex-A76'"):
        LatencyPredictor.fit([training[0], other])
    threads = dataclasses.replace(training[1], host={**training[1].host, "threads": 64})
    with pytest.raises(ProfileError, match="64 threads"):
        LatencyPredictor.fit([training[0], threads])


def test_fitting_needs_measured_profiles_with_op_kinds(training: list[Profile]) -> None:
    with pytest.raises(ProfileError, match="node 'stem' has no 'op'"):
        LatencyPredictor.fit([Profile.from_dict(CHAIN)])
    with pytest.raises(ProfileError, match="'cloud'.*is itself a prediction"):
        LatencyPredictor.fit([dataclasses.replace(scale_profile(training[0], 2, "x"),
                                                  model="cloud")])
    with pytest.raises(ValueError, match="at least one"):
        LatencyPredictor.fit([])


def test_an_op_kind_never_seen_uses_the_pooled_fit(predictor: LatencyPredictor) -> None:
    skeleton = Profile.from_graph(trace(CNN(32, act=nn.GELU), X, name="cnn32-gelu"))
    assert "gelu" not in predictor.kinds
    predicted = predictor.predict(skeleton)
    assert predicted.predicted["pooled_kinds"] == ["gelu"]
    gelus = 0
    for (kind, features), node in zip(node_features(skeleton), predicted.nodes):
        if kind == "gelu":
            gelus += 1
            assert predictor.fit_for(kind) is predictor.pooled
            assert node.latency_s == predictor.pooled.predict(features)
        else:
            assert node.latency_s == predictor.kinds[kind].predict(features)
    assert gelus == 3
