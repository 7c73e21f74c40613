"""Dynamic shapes: costs at any size from a few profiled sizes, a plan per size, and requests
of sizes never profiled served bit for bit by real tier servers (issue 23)."""
import math

import pytest
import torch

from tiercut.errors import ProfileError
from tiercut.measure import ProfileSettings, scale_profile
from tiercut.measure.profile import ModelInput, NodeProfile, Profile
from tiercut.measure.sizes import SizedProfiles, profile_sizes
from tiercut.planner import Host, Scenario, parse_link, plan
from tiercut.runtime.launch import serve_in_thread
from tiercut.runtime.sized import SizedClient, SizePlanner
from tiercut.runtime.stageplan import StagePlan, layout
from tiercut.zoo import entry, resolve

from assignments import assert_same

NAMES = ("a", "b", "c")


def chain(batch: int, ms_per_node: float, extra: float = 0.0) -> Profile:
    """Three nodes in a chain, each ``ms_per_node`` (+ ``extra`` on node c), bytes ~ batch."""
    nodes, prev = [], ("x",)
    for i, name in enumerate(NAMES):
        ms = ms_per_node + (extra if name == "c" else 0.0)
        nodes.append(NodeProfile(name, prev, ms / 1e3, (100 - 40 * i) * batch,
                                 flops=1000 * batch))
        prev = (name,)
    return Profile("chain", {}, 400 * batch, ("c",), tuple(nodes),
                   inputs=(ModelInput("x", 400 * batch, (batch, 100), "float32"),),
                   model_latency_s=3 * ms_per_node / 1e3, batch=batch)


def measured_at(*sizes, ms=lambda b: 2.0 * b + 1.0):
    return SizedProfiles(sizes, tuple(chain(s, ms(s)) for s in sizes))


def test_exact_at_the_measured_sizes():
    sized = measured_at(1, 4, 16)
    for size, p in zip(sized.sizes, sized.profiles):
        assert sized.at(size) == p


def test_linear_between_the_measured_sizes():
    sized = SizedProfiles((1, 4, 16), (chain(1, 1.0), chain(4, 10.0), chain(16, 20.0)))
    p2, p10 = sized.at(2), sized.at(10)
    assert p2.node("a").latency_s == pytest.approx((1.0 + 9.0 / 3) / 1e3)
    assert p10.node("a").latency_s == pytest.approx((10.0 + 10.0 / 2) / 1e3)
    assert p2.node("a").output_bytes == 200 and p10.node("c").output_bytes == 200
    assert (p2.input_bytes, p2.inputs[0].bytes, p2.inputs[0].shape) == (800, 800, (2, 100))
    assert p2.batch == 2 and p2.node("b").flops == 2000
    assert p2.model_latency_s == pytest.approx(3 * 4.0 / 1e3)
    assert p2.predicted["method"] == "size-interpolation" and p2.predicted["from_sizes"] == [1, 4]
    assert p2.signature() != sized.at(3).signature()  # bytes move with the batch


def test_extrapolated_from_the_two_nearest_never_below_zero():
    sized = SizedProfiles((1, 4, 16), (chain(1, 1.0), chain(4, 10.0), chain(16, 20.0)))
    assert sized.at(32).node("b").latency_s == pytest.approx((20.0 + 10.0 * 16 / 12) / 1e3)
    assert sized.at(32).node("a").output_bytes == 3200
    falling = SizedProfiles((4, 8), (chain(4, 10.0), chain(8, 2.0)))
    assert falling.at(16).node("a").latency_s == 0.0  # 10 - 2 * 8 < 0: held at 0
    assert falling.at(1).node("a").latency_s == pytest.approx(16.0 / 1e3)
    one = SizedProfiles((2,), (chain(2, 3.0),))  # one size: proportional
    assert one.at(6).node("a").latency_s == pytest.approx(9.0 / 1e3)
    assert one.at(6).node("a").output_bytes == 600


@pytest.mark.parametrize("sizes, match", [((), "sizes is empty"),
                                          ((1, 4, 4), r"not increasing \(4 after 4\)"),
                                          ((4, 1), r"not increasing \(1 after 4\)"),
                                          ((0, 4), "size 0 in"), ((1, 2.5), "size 2.5 in")])
def test_bad_sizes_are_named(sizes, match):
    with pytest.raises(ValueError, match=match):
        SizedProfiles(sizes, tuple(chain(1, 1.0) for _ in sizes))


def test_other_bad_inputs_are_named():
    other = Profile("chain", {}, 400, ("z",), (NodeProfile("a", ("x",), 1e-3, 10),
                                               NodeProfile("z", ("a",), 1e-3, 10)),
                    inputs=(ModelInput("x", 400),))
    with pytest.raises(ValueError, match=r"\['b', 'c'\] only at size 1 and \['z'\] only at "
                                         "size 4"):
        SizedProfiles((1, 4), (chain(1, 1.0), other))
    with pytest.raises(ValueError, match="2 sizes"):
        SizedProfiles((1, 4), (chain(1, 1.0),))
    with pytest.raises(ValueError, match="size must be an integer >= 1, got 0"):
        measured_at(1, 4).at(0)
    with pytest.raises(ValueError, match="size 0 in"):
        profile_sizes(entry("digits_cnn"), (0,))


def test_saved_and_loaded(tmp_path):
    sized = measured_at(1, 4, 16)
    sized.save(tmp_path / "s.json")
    again = SizedProfiles.load(tmp_path / "s.json")
    assert again == sized and again.at(8) == sized.at(8)
    (tmp_path / "bad.json").write_text('{"format": "tiercut-profile/1"}')
    with pytest.raises(ProfileError, match="expected 'tiercut-sized-profiles/1'"):
        SizedProfiles.load(tmp_path / "bad.json")


def offload_scenario(profile, size, device_speed=0.1, rate="100mbit,20ms", private=None):
    hosts = (Host("device", "device", scale_profile(profile, device_speed, "device")),
             Host("edge", "edge", scale_profile(profile, 1.0, "edge")))
    return Scenario(("device", "edge"), hosts, {("device", "edge"): parse_link(rate)},
                    private_input=private)


def test_the_plan_changes_with_size():
    # a device 10x slower than the edge, 20 ms away: a batch of 1 stays, 16 goes
    sized = SizedProfiles((1, 16), (chain(1, 0.5), chain(16, 8.0)))
    planner = SizePlanner("chain", sized, offload_scenario, plan)
    chosen = {s: planner.plan(s) for s in (1, 2, 8, 16, 32)}
    assert set(chosen[1].assignment.values()) == {"device"}
    assert set(chosen[16].assignment.values()) == {"edge"}
    totals = [chosen[s].total_s for s in sorted(chosen)]
    assert totals == sorted(totals)
    at8 = planner(8)
    assert at8.batch == 8 and at8.tiers == ("device", "edge")
    assert at8.assignment == {n: 1 for n in NAMES}


def test_a_real_model_plans_at_sizes_it_was_not_profiled_at():
    settings = ProfileSettings(threads=1, repeat=3, warmup=1)
    sized = profile_sizes(entry("digits_cnn"), (1, 4), settings)
    assert sized.model == "digits_cnn" and [p.batch for p in sized.profiles] == [1, 4]
    planner = SizePlanner("digits_cnn", sized, offload_scenario, plan)
    totals = []
    for size in (2, 8):
        stage_plan = planner(size)
        lay = layout(stage_plan)  # the servers' view at that batch: it builds and splits
        assert set(stage_plan.assignment) == {n.name for n in lay.graph.compute_nodes}
        assert lay.signatures[lay.graph.inputs[0]].shape[0] == size
        totals.append(planner.plan(size).total_s)
    assert 0 < totals[0] < totals[1]


def test_sized_client_names_what_does_not_fit():
    wrong = SizedClient("digits_cnn", lambda s: StagePlan("squeezenet1_1", ("device",), {}),
                        {})
    with pytest.raises(ValueError, match="planned model 'squeezenet1_1', not 'digits_cnn'"):
        wrong.client(1)
    far = SizedClient("digits_cnn", lambda s: StagePlan("digits_cnn", ("device", "cloud"), {}),
                      {"edge": "127.0.0.1:1"})
    with pytest.raises(ValueError, match=r"endpoints give no host for \['cloud'\]"):
        far.client(2)
    with pytest.raises(ValueError, match="size must be an integer >= 1, got 0"):
        far.client(0)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the servers run: bit-equal answers need the same split
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_sized_client_serves_sizes_never_profiled_bit_for_bit(one_thread):
    model_name = "digits_cnn"
    settings = ProfileSettings(threads=1, repeat=3, warmup=1)
    sized = profile_sizes(entry(model_name), (1, 4), settings)

    def scenario_for(profile, size):  # the input stays on the device: every plan splits
        return offload_scenario(profile, size, device_speed=0.05, rate="1gbit,0.1ms",
                                private=1)

    planner = SizePlanner(model_name, sized, scenario_for, plan)
    model = resolve(model_name).build()
    with serve_in_thread([model_name], threads=1) as edge, \
            SizedClient(model_name, planner, {"edge": edge.endpoint}) as client:
        assert client.sizes == ()
        for batch in (1, 3, 8):
            x = torch.randn(batch, *resolve(model_name).inputs[0].shape[1:])
            out, m = client.infer(x)
            with torch.inference_mode():
                assert_same(out, model(x))
            assert not m.fallback and [t.tier for t in m.servers] == ["edge"]
            assert client.plan(batch).batch == batch
        assert client.sizes == (1, 3, 8)
        assert all(math.isfinite(planner.plan(s).total_s) for s in client.sizes)


class Pooled(torch.nn.Module):
    """Convolutions and a global pool: one graph at every image size."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3)
        self.pool, self.fc = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x))))).flatten(1))


def pooled() -> torch.nn.Module:
    return Pooled()


pooled.input_shape = (1, 3, 16, 16)
POOLED = "test_sizes:pooled"


@pytest.mark.slow
def test_image_sizes_never_profiled_are_served_bit_for_bit(one_thread):
    def make(side):
        spec = resolve(POOLED, (1, 3, side, side))
        return spec.build(), spec.example_inputs()

    settings = ProfileSettings(threads=1, repeat=3, warmup=1)
    sized = profile_sizes(make, (16, 32), settings, name=POOLED, dimension="image")
    assert sized.at(24).inputs[0].shape == (1, 3, 24, 24) and sized.at(24).batch == 1

    def scenario_for(profile, size):
        return offload_scenario(profile, size, device_speed=0.05, rate="1gbit,0.1ms",
                                private=1)

    planner = SizePlanner(POOLED, sized, scenario_for, plan, dimension="image",
                          input_shape_of=lambda side: (1, 3, side, side))
    model = resolve(POOLED).build()
    with serve_in_thread([POOLED], threads=1) as edge, \
            SizedClient(POOLED, planner, {"edge": edge.endpoint},
                        size_of=lambda inputs: inputs[0].shape[-1]) as client:
        for side in (16, 24, 40):
            x = torch.randn(1, 3, side, side)
            out, m = client.infer(x)
            with torch.inference_mode():
                assert_same(out, model(x))
            assert not m.fallback and [t.tier for t in m.servers] == ["edge"]
            assert client.plan(side).input_shape == (1, 3, side, side)
        assert client.sizes == (16, 24, 40)


def test_sequence_lengths_never_profiled_are_served_for_an_hf_model(one_thread):
    """A zoo or hf: model at another sequence length: the plan carries its --input specs."""
    pytest.importorskip("transformers")
    spec = "hf:bert,num_hidden_layers=1"

    def inputs_at(n):
        return [f"input_ids:1x{n}:int64:0-1000", f"attention_mask:1x{n}:int64"]

    def make(n):
        e = resolve(spec, inputs=inputs_at(n))
        return e.build(), e.example_inputs()

    settings = ProfileSettings(threads=1, repeat=2, warmup=1)
    sized = profile_sizes(make, (8, 32), settings, name=spec, dimension="sequence")

    def scenario_for(profile, size):
        return offload_scenario(profile, size, device_speed=0.05, rate="1gbit,0.1ms",
                                private=1)

    planner = SizePlanner(spec, sized, scenario_for, plan, dimension="sequence",
                          inputs_of=inputs_at)
    with serve_in_thread([spec], threads=1) as edge, \
            SizedClient(spec, planner, {"edge": edge.endpoint},
                        size_of=lambda inputs: inputs[0].shape[-1]) as client:
        for n in (12, 20):
            e = resolve(spec, inputs=inputs_at(n))
            model, x = e.build(), e.example_inputs()
            out, m = client.infer(*x)
            with torch.inference_mode():
                want = model(*x)
            assert torch.equal(out.last_hidden_state, want.last_hidden_state)
            assert not m.fallback and [t.tier for t in m.servers] == ["edge"]
            assert client.plan(n).inputs == tuple(inputs_at(n))
    with pytest.raises(Exception, match="inputs"):
        StagePlan.from_assignment(spec, {}, ("device",), inputs=["input_ids:1xZ:int64"])
