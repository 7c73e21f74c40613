"""<image model>+frames: the model takes 8-bit frames and normalises them as its first nodes."""
import pytest
import torch

from tiercut import trace, zoo
from tiercut.codecs import decode, encode
from tiercut.errors import UnknownModelError
from tiercut.graph.split import run_stages, split
from tiercut.runtime.stageplan import StagePlan, build_stages
from tiercut.zoo.frames import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def frames():
    e = zoo.entry("squeezenet1_1+frames")
    model, x = e.build(), e.example_inputs(2)
    return e, model, x, trace(model, e.example_inputs(), name=e.name)


def test_the_frame_is_normalised_by_the_graph_first_nodes(frames):
    e, model, (x,), g = frames
    first = g.compute_nodes[:2]
    assert [n.op for n in first] == ["sub", "truediv"] and g.inputs[0] in first[0].inputs
    assert torch.equal(torch.round(x * 255) / 255, x)  # an 8-bit frame
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    base = zoo.entry("squeezenet1_1").build()
    with torch.inference_mode():
        assert torch.equal(model(x), base((x - mean) / std))
    assert e.params == zoo.entry("squeezenet1_1").params


@pytest.mark.parametrize("position", [0, 1, 2, 10])
def test_u8_carries_the_frame_exactly_and_any_cut_keeps_the_answer(frames, position):
    _, model, (x,), g = frames
    sent = decode(encode(x, "u8"))
    assert torch.equal(sent, x)
    compute = [n.name for n in g.compute_nodes]
    stages = split(g, {n: 0 if i < position else 1 for i, n in enumerate(compute)})
    with torch.inference_mode():
        assert torch.equal(run_stages(g, stages, sent[:1]), model(x[:1]))


def test_a_plan_for_a_frames_model_builds_in_a_server_process_by_name(frames):
    e, _, _, g = frames
    compute = [n.name for n in g.compute_nodes]
    plan = StagePlan.from_assignment(e.name, {n: int(i >= 2) for i, n in enumerate(compute)},
                                     ("device", "cloud"))
    graph, stages, entry = build_stages(plan)
    assert len(stages) == 2 and entry.name == e.name and isinstance(entry.inputs[0], type(e.inputs[0]))


@pytest.mark.parametrize("name, match", [("digits_cnn+frames", r"frames are \(N, 3, H, W\)"),
                                         ("minilm_l6+frames", "fits the zoo's image models"),
                                         ("nope+frames", "unknown model 'nope\\+frames'")])
def test_frames_of_a_model_that_takes_no_images_is_refused(name, match):
    with pytest.raises(UnknownModelError, match=match):
        zoo.entry(name)
