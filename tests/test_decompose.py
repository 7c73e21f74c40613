"""One layer range on many nodes: tiled and channel-split runs give the undivided answer.

Stated per op (tiercut.decompose.rules): element-wise ops, batch norm and pooling are bit-exact
on a part; convolutions sum the same products but may order them differently for another
input size, so they are held to 1e-5 relative (on this CPU full-width rows and large grid cells
were bit-exact; tiles a few pixels wide differed by about 1e-6 relative).
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from tiercut import trace, zoo
from tiercut.decompose import DecomposeError, SpatialRun
from tiercut.decompose.channels import ChannelSplit
from tiercut.graph.split import node_values as values

REL = 1e-5


def close(y, ref, exact):
    assert y.shape == ref.shape
    if exact:
        assert torch.equal(y, ref)
    else:
        scale = ref.abs().max().clamp_min(1e-30)
        assert float((y - ref).abs().max() / scale) <= REL


# ---- random conv stacks ------------------------------------------------------------------
class Stack(nn.Module):
    """Layers drawn by hypothesis; ("res", i) adds the output of layer i (same shape) back."""

    def __init__(self, specs, channels, size):
        super().__init__()
        self.specs = specs
        layers, c = [], channels
        for kind, a in specs:
            if kind == "conv":
                k, s, p, d, depthwise, out = a
                layers.append(nn.Conv2d(c, c if depthwise else out, k, s, p, d,
                                        groups=c if depthwise else 1))
                c = c if depthwise else out
            elif kind == "max":
                layers.append(nn.MaxPool2d(a[0], a[1], a[2]))
            elif kind == "avg":
                layers.append(nn.AvgPool2d(a[0], a[1], a[2]))
            elif kind == "bn":
                bn = nn.BatchNorm2d(c)
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                layers.append(bn)
            else:
                layers.append(nn.ReLU() if kind == "relu" else nn.Identity())
        self.layers = nn.ModuleList(layers).eval()
        # which earlier output each "res" layer adds (one of the same shape), fixed here so
        # that forward has no shape test and torch.fx captures it
        self.res, shapes, x = [], [], torch.zeros(1, channels, *size)
        with torch.no_grad():
            for (kind, a), layer in zip(specs, self.layers):
                x = layer(x)
                j = a % len(shapes) if kind == "res" and shapes else None
                self.res.append(j if j is not None and shapes[j] == x.shape else None)
                shapes.append(x.shape)

    def forward(self, x):
        outs = []
        for j, layer in zip(self.res, self.layers):
            y = layer(x)
            if j is not None:
                y = y + outs[j]
            outs.append(y)
            x = y
        return x


def layer_specs(draw, n):
    specs = []
    for _ in range(n):
        kind = draw(st.sampled_from(["conv", "conv", "conv", "max", "avg", "bn", "relu", "res"]))
        if kind == "conv":
            k = draw(st.sampled_from([1, 3, 5]))
            specs.append(("conv", (k, draw(st.sampled_from([1, 1, 2])),
                                   draw(st.integers(0, k // 2)), draw(st.sampled_from([1, 1, 2])),
                                   draw(st.booleans()), draw(st.integers(2, 6)))))
        elif kind in ("max", "avg"):
            k = draw(st.sampled_from([2, 3]))
            specs.append((kind, (k, draw(st.sampled_from([1, 2])), draw(st.integers(0, k // 2)))))
        else:
            specs.append((kind, draw(st.integers(0, 5))))
    return specs


@st.composite
def stacks(draw):
    specs = layer_specs(draw, draw(st.integers(1, 6)))
    size = (draw(st.integers(12, 36)), draw(st.integers(12, 36)))
    return specs, size, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks(), st.data())
def test_random_conv_stacks_tiled_give_the_undivided_answer(stack, data):
    specs, (h, w), seed = stack
    torch.manual_seed(seed)
    try:
        model = Stack(specs, 3, (h, w)).eval()
    except RuntimeError:  # the drawn stack shrinks the image to nothing
        return
    x = torch.randn(1, 3, h, w)
    with torch.inference_mode():
        ref = model(x)
    graph = trace(model, (x,), name="stack")
    assert graph.method == "fx"
    names = [n.name for n in graph.compute_nodes]
    run = SpatialRun(graph, names[0], names[-1])
    _, _, oh, ow = run.out_shape
    exact = not any(k == "conv" for k, _ in specs)
    if oh > 1:
        k = data.draw(st.integers(1, min(4, oh - 1)))
        bounds = sorted(data.draw(st.sets(st.integers(1, oh - 1), min_size=k, max_size=k)))
        close(run.run(x, run.row_parts(bounds)), ref, exact)
    rows, cols = data.draw(st.integers(1, min(3, oh))), data.draw(st.integers(1, min(3, ow)))
    close(run.run(x, run.grid_parts(rows, cols)), ref, exact)


# ---- the zoo -----------------------------------------------------------------------------
ZOO_RUNS = [("vgg16", "features_0", "features_9"), ("vgg16", "features_10", "features_29"),
            ("resnet18", "conv1", "layer2_1_relu_1"), ("resnet50", "layer1_0_downsample_0", "layer1_2_relu_2"),
            ("mobilenet_v2", None, None)]


@pytest.fixture(scope="module")
def traced():
    cache = {}

    def get(name):
        if name not in cache:
            e = zoo.entry(name)
            x = e.example_inputs()
            g = trace(e.build(), x, name=name)
            cache[name] = (g, values(g, *x))
        return cache[name]
    return get


@pytest.mark.parametrize("model, first, last", ZOO_RUNS)
def test_zoo_runs_tiled_by_rows_and_grid_give_the_undivided_answer(traced, model, first, last):
    graph, vals = traced(model)
    names = [n.name for n in graph.compute_nodes]
    if first is None:  # the longest tileable run from the first node
        first = names[0]
        for v in names:
            try:
                SpatialRun(graph, first, v)
                last = v
            except DecomposeError:
                if last is not None and names.index(v) > names.index(last) + 8:
                    break
    run = SpatialRun(graph, first, last)
    ref = vals[last]
    h = run.out_shape[2]
    for parts in (run.row_parts([h // 2]), run.row_parts([h // 4, h // 2, 3 * h // 4]),
                  run.grid_parts(2, 3)):
        close(run.run(vals[run.source], parts), ref, exact=False)
    p = run.row_parts([h // 2])
    assert p[0].halo_rows + p[1].halo_rows > run.shape[run.source][2]  # the halo overlaps


def test_a_part_reads_its_halo_and_computes_more_than_its_share(traced):
    graph, _ = traced("vgg16")
    run = SpatialRun(graph, "features_0", "features_4")  # conv, relu, conv, relu, pool
    top, bottom = run.row_parts([56])
    assert top.out == ((0, 56), (0, 112)) and bottom.out == ((56, 112), (0, 112))
    # pool 2x2 needs rows 0..112 of the conv; each 3x3 conv adds one row of halo below
    assert top.rects["features_3"] == ((0, 112), (0, 224))
    assert top.source == ((0, 114), (0, 224)) and bottom.source == ((110, 224), (0, 224))
    assert top.area("features_0") == 113 * 224  # one halo row of the first conv's output
    assert top.area("features_2") == 112 * 224  # the second conv: its share exactly


# ---- refusals ----------------------------------------------------------------------------
def test_a_run_through_a_global_pooling_is_refused_naming_the_node(traced):
    graph, _ = traced("vgg16")
    with pytest.raises(DecomposeError, match=r"node 'avgpool' \(adaptiveavgpool2d\) cannot be "
                                             r"tiled exactly"):
        SpatialRun(graph, "features_28", "avgpool")


def test_a_run_read_in_its_middle_or_reading_two_tensors_is_refused(traced):
    graph, _ = traced("resnet18")
    with pytest.raises(DecomposeError, match="read after the run"):
        SpatialRun(graph, "conv1", "layer1_0_conv2")  # maxpool is read by the residual add
    with pytest.raises(DecomposeError, match="reads .* from outside it"):
        SpatialRun(graph, "layer1_0_conv2", "layer1_0_relu_1")  # the add reads maxpool too
    with pytest.raises(DecomposeError, match="comes after"):
        SpatialRun(graph, "layer1_0_conv2", "conv1")
    with pytest.raises(DecomposeError, match="not a node"):
        SpatialRun(graph, "nope", "conv1")


def test_bad_parts_are_refused(traced):
    graph, vals = traced("vgg16")
    run = SpatialRun(graph, "features_0", "features_4")
    for bounds in ([0], [60, 50], [112]):
        with pytest.raises(DecomposeError, match="row bounds"):
            run.row_parts(bounds)
    with pytest.raises(DecomposeError, match="non-empty rectangle"):
        run.part(((0, 0), (0, 10)))
    part = run.row_parts([56])[0]
    with pytest.raises(DecomposeError, match="cropped to 114x224"):
        run.run_part(part, vals["x"])
    with pytest.raises(DecomposeError, match="uncovered"):
        run.run(vals["x"], [part])


# ---- output channels ---------------------------------------------------------------------
@pytest.mark.parametrize("model, layer, last, sizes", [
    ("vgg16", "features_2", "features_3", [20, 20, 24]),
    ("resnet18", "conv1", "relu", [16, 48]),
    ("vgg16", "classifier_0", "classifier_1", [1000, 3000, 96]),
])
def test_a_layer_split_by_output_channels_gives_the_undivided_answer(traced, model, layer, last,
                                                                     sizes):
    graph, vals = traced(model)
    split = ChannelSplit(graph, layer, last)
    x = vals[graph[layer].inputs[0]]
    close(split.run(x, split.parts(sizes)), vals[last], exact=False)


def test_channel_splits_that_cannot_be_exact_are_refused(traced):
    graph, _ = traced("vgg16")
    with pytest.raises(DecomposeError, match=r"'features_4' \(maxpool2d\) cannot be split"):
        ChannelSplit(graph, "features_4")
    split = ChannelSplit(graph, "features_0")
    with pytest.raises(DecomposeError, match="adding up to 'features_0''s 64"):
        split.parts([32, 31])
    graph, _ = traced("mobilenet_v2")
    depthwise = next(n.name for n in graph.compute_nodes if n.op == "conv2d"
                     and graph.module.get_submodule(n.target).groups > 1)
    with pytest.raises(DecomposeError, match="groups="):
        ChannelSplit(graph, depthwise)
