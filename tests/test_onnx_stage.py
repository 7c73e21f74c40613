"""The ONNX Runtime backend: split, export each stage, run with onnxruntime, and get the eager
model's answer back within max|onnx - eager| <= 1e-4 * max(1, max|eager|), stage by stage and
end to end; the on-disk cache is reused, keyed by stage and shapes, and never trusted when
corrupt."""
import os
import random
import shutil

import pytest
import torch
from torch import nn

from tiercut import run_stages, split, trace, zoo
from tiercut.runtime import onnx_stage
from tiercut.runtime.onnx_stage import BackendError, OnnxStage, export_stage, onnx_stages

from assignments import random_assignment
from userzoo import UsesSize

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

RTOL = 1e-4


def assert_close(got, ref, what=""):
    """max|got - ref| <= 1e-4 * max(1, max|ref|), same shape and dtype."""
    assert isinstance(got, torch.Tensor), what
    assert got.shape == ref.shape and got.dtype == ref.dtype, what
    err = (got.double() - ref.double()).abs().max().item()
    bound = RTOL * max(1.0, ref.double().abs().max().item())
    assert err <= bound, f"{what}: max|diff| {err:.3g} > {bound:.3g}"


def assignment_using_every_stage(graph, stages, seed):
    """A random valid assignment (tests/assignments.py) in which no stage is empty."""
    rng = random.Random(seed)
    for _ in range(200):
        a = random_assignment(graph, stages, rng)
        if set(a.values()) == set(range(stages)):
            return a
    raise AssertionError(f"no assignment of {graph.name} uses all {stages} stages")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def zoo_graphs():
    built = {}

    def get(name):
        if name not in built:
            e = zoo.entry(name)
            model = e.build()
            x = e.example_inputs()
            built[name] = (model, x, trace(model, x, name))
        return built[name]

    return get


@pytest.mark.parametrize("name,n_stages", [
    ("resnet18", 2), ("resnet18", 3), ("mobilenet_v2", 2), ("mobilenet_v2", 3),
    ("squeezenet1_1", 2), ("squeezenet1_1", 3), ("minilm_l6", 2), ("vit_tiny", 3),
])
def test_onnx_stages_equal_eager(name, n_stages, cache, zoo_graphs):
    model, x, graph = zoo_graphs(name)
    seed = sum(map(ord, name)) * 10 + n_stages
    stages = split(graph, assignment_using_every_stage(graph, n_stages, seed))
    ox = onnx_stages(graph, stages, cache, name, x, threads=1)
    assert [s.index for s in ox] == list(range(n_stages))
    with torch.no_grad():
        env = dict(zip(graph.inputs, x))
        for torch_stage, o in zip(stages, ox):  # stage by stage, on the torch values
            assert (o.inputs, o.outputs) == (torch_stage.inputs, torch_stage.outputs)
            expected = torch_stage.run(env)
            got = o.run(env)
            assert list(got) == list(expected)
            for value in expected:
                assert_close(got[value], expected[value], f"{name} stage {o.index} {value}")
            env.update(expected)
        assert_close(run_stages(graph, ox, *x), model(*x), f"{name} end to end")


class Tiny(nn.Module):
    """Small and fast to export; its second output is an integer tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        logits = self.fc(y)
        return logits, logits.argmax(dim=1)


@pytest.fixture(scope="module")
def tiny():
    model = Tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    return model, x, trace(model, x, "tiny")


@pytest.fixture(scope="module")
def tiny_files(tiny, tmp_path_factory):
    """A cache holding tiny's two stages cut after node 2, exported once for the module."""
    _, x, graph = tiny
    folder = tmp_path_factory.mktemp("tiny_cache")
    onnx_stages(graph, cut(graph, 2), folder, "tiny", x, threads=1)
    return folder


@pytest.fixture
def tiny_cache(tiny_files, tmp_path):
    """A private copy of ``tiny_files`` that a test may damage."""
    for f in tiny_files.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    return tmp_path


def cut(graph, at):
    names = [n.name for n in graph.compute_nodes]
    return split(graph, {n: int(i >= at) for i, n in enumerate(names)})


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = onnx_stage.export_stage

    def counting(stage, *args, **kwargs):
        calls.append(stage.index)
        return real(stage, *args, **kwargs)

    monkeypatch.setattr(onnx_stage, "export_stage", counting)
    return calls


def test_integer_outputs_keep_their_dtype(tiny, tiny_cache):
    model, x, graph = tiny
    ox = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny", x, threads=1)
    logits, labels = run_stages(graph, ox, x)
    ref_logits, ref_labels = model(x)
    assert_close(logits, ref_logits.detach())
    assert labels.dtype == torch.int64 and torch.equal(labels, ref_labels)


def test_second_call_reuses_the_cache(tiny, tiny_files, counted):
    _, x, graph = tiny
    before = {p: p.stat().st_mtime_ns for p in tiny_files.iterdir()}
    assert len(before) == 2  # tiny_files' own call exported the two stages once
    again = onnx_stages(graph, cut(graph, 2), tiny_files, "tiny", x, threads=1)
    assert counted == []  # nothing exported the second time
    assert {o.path: o.path.stat().st_mtime_ns for o in again} == before
    assert not [p for p in os.listdir(tiny_files) if p.endswith(".tmp")]


def test_other_assignment_or_key_gets_other_files(tiny, tiny_cache, counted):
    _, x, graph = tiny
    a = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny", x, threads=1)
    b = onnx_stages(graph, cut(graph, 3), tiny_cache, "tiny", x, threads=1)
    c = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny-v2", x, threads=1)
    paths = [o.path for o in (*a, *b, *c)]
    assert len(set(paths)) == 6 and counted == [0, 1] * 2
    assert all(p.exists() for p in paths)


def test_plans_that_share_a_stage_share_its_file(tiny, tiny_cache, counted):
    _, x, graph = tiny
    plan = {"conv": 0, "relu": 0, "mean": 1, "fc": 1, "argmax": 2}
    assert [n.name for n in graph.compute_nodes] == list(plan)
    two = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny", x, threads=1)
    three = onnx_stages(graph, split(graph, plan), tiny_cache, "tiny", x, threads=1)
    assert three[0].path == two[0].path  # same nodes on stage 0: same file, not exported again
    assert counted == [1, 2]


def test_an_export_that_disagrees_with_torch_is_refused_and_removed(tiny, tmp_path):
    _, x, graph = tiny
    with pytest.raises(BackendError, match=r"stage 0: the exported ONNX is wrong: output 'relu' "
                                           r"differs from torch by .*torch backend can run"):
        onnx_stages(graph, cut(graph, 2), tmp_path, "tiny", x, rtol=-1.0)  # nothing passes
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other stage's file"])
def test_corrupt_cache_file_is_rebuilt(tiny, tiny_cache, counted, damage, caplog):
    model, x, graph = tiny
    stages = cut(graph, 2)
    paths = sorted(tiny_cache.iterdir(), key=lambda p: p.name.split("-stage")[1])
    data = paths[1].read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b"",
               "other stage's file": paths[0].read_bytes()}[damage]
    paths[1].write_bytes(damaged)
    ox = onnx_stages(graph, stages, tiny_cache, "tiny", x, threads=1)
    assert counted == [1]  # stage 1 exported again, stage 0 reused
    assert "rebuilding cached ONNX stage" in caplog.text
    assert paths[1].read_bytes() != damaged
    assert_close(run_stages(graph, ox, x)[0], model(x)[0].detach())


def test_stale_weights_under_the_same_key_are_rebuilt(tmp_path, counted):
    x = torch.randn(1, 4)
    first = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    second = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()  # other random weights
    for model in (first, second):
        graph = trace(model, x, "seq")
        ox = onnx_stages(graph, cut(graph, 1), tmp_path, "seq", x, threads=1)
        assert_close(run_stages(graph, ox, x), model(x).detach())
    # same key, same plan, same shapes: the second model finds the first one's files, sees that
    # stage 0 disagrees with torch on the example, and rebuilds it (relu has no weights)
    assert counted == [0, 1, 0]


def test_empty_stage_is_a_pass_through(tiny, tmp_path):
    model, x, graph = tiny
    names = [n.name for n in graph.compute_nodes]
    stages = split(graph, {n: 0 if i < 2 else 2 for i, n in enumerate(names)})
    ox = onnx_stages(graph, stages, tmp_path, "tiny", x, threads=1)
    assert ox[1].session is None and ox[1].inputs == ox[1].outputs == ()
    assert ox[1].run({}) == {}
    assert_close(run_stages(graph, ox, x)[0], model(x)[0].detach())
    with pytest.raises(BackendError, match="stage 1 has no nodes"):
        export_stage(stages[1], {}, tmp_path / "empty.onnx")


def test_other_shapes_are_refused_with_the_reason(tiny, tiny_cache):
    _, x, graph = tiny
    ox = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny", x, threads=1)
    with pytest.raises(BackendError, match=r"stage 0: input 'x' is \(1, 3, 8, 8\) float32.*fixed "
                                           r"shapes, batch included"):
        ox[0].run({"x": x[:1]})
    with pytest.raises(BackendError, match=r"input 'x' is \(2, 3, 8, 8\) float64"):
        ox[0].run({"x": x.double()})
    with pytest.raises(BackendError, match=r"input 'x' is a int, not a tensor"):
        ox[0].run({"x": 3})


def test_a_size_crossing_stages_is_refused(tmp_path):
    x = torch.randn(2, 3, 8, 8)
    graph = trace(UsesSize().eval(), x, "uses_size")
    names = [n.name for n in graph.compute_nodes]
    assert names[:2] == ["conv", "size"]
    stages = cut(graph, 2)  # conv and size on stage 0: the int size crosses to stage 1
    with pytest.raises(BackendError, match=r"stage 0: output 'size' is a int \(2\), not a tensor.*"
                                           r"torch backend"):
        onnx_stages(graph, stages, tmp_path, "uses_size", x)
    assert not list(tmp_path.iterdir())
    # with the cut elsewhere only tensors cross, and the size is a constant of the export
    assert_close(run_stages(graph, onnx_stages(graph, cut(graph, 1), tmp_path, "uses_size", x,
                                               threads=1), x), graph.module(x).detach())


@torch.library.custom_op("tiercut_test::onnx_twist", mutates_args=())
def twist(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1) * 2


@twist.register_fake
def _(x):
    return torch.empty_like(x)


class Twisted(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(torch.ops.tiercut_test.onnx_twist(self.fc(x)))


def test_export_failure_names_stage_and_op(tmp_path):
    x = torch.randn(1, 4)
    graph = trace(Twisted().eval(), x, "twisted")
    stages = cut(graph, 1)  # fc on stage 0; twist and relu on stage 1
    with pytest.raises(BackendError, match=r"stage 1 cannot be exported to ONNX by the dynamo "
                                           r"exporter: .*tiercut_test.onnx_twist.*torch backend"):
        onnx_stages(graph, stages, tmp_path, "twisted", x)
    files = [p.name for p in tmp_path.iterdir()]
    assert len(files) == 1 and "stage0" in files[0]  # no file, not even a half one, for stage 1


def test_loads_an_existing_file_directly(tiny, tmp_path):
    _, x, graph = tiny
    stage = cut(graph, 2)[0]
    path = export_stage(stage, {"x": x}, tmp_path / "s0.onnx")
    o = OnnxStage.load(path, stage, threads=1)
    with torch.no_grad():
        expected = stage.run({"x": x})
    for name, value in o.run({"x": x}).items():
        assert_close(value, expected[name])


def test_torchscript_exporter_is_an_option_with_its_own_files(tiny, tiny_cache):
    model, x, graph = tiny
    dynamo_files = set(tiny_cache.iterdir())
    ox = onnx_stages(graph, cut(graph, 2), tiny_cache, "tiny", x, threads=1, exporter="torchscript")
    assert not {o.path for o in ox} & dynamo_files
    assert_close(run_stages(graph, ox, x)[0], model(x)[0].detach())
    with pytest.raises(BackendError, match=r"unknown exporter 'jit'; choose one of"):
        export_stage(cut(graph, 2)[0], {"x": x}, tiny_cache / "s.onnx", exporter="jit")


def test_a_failed_write_leaves_no_file(tiny, tmp_path, monkeypatch):
    _, x, graph = tiny

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(onnx_stage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export_stage(cut(graph, 2)[0], {"x": x}, tmp_path / "s0.onnx")
    assert not list(tmp_path.iterdir())  # neither the file nor the temporary one
