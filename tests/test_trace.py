"""Graph capture: metadata per node, the export fallback, lint, and errors that name the problem."""
import dataclasses

import pytest
import torch
from torch import nn

from tiercut import ExampleInputError, GraphError, TraceError, run_stages, split, trace
from tiercut.graph import Graph, Node


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        y = self.pool(torch.relu(self.conv(x)))
        return self.fc(torch.flatten(y, 1))


def test_nodes_carry_shapes_bytes_params_and_flops():
    graph = trace(SmallNet(), torch.randn(1, 3, 8, 8))
    graph.lint()
    conv, fc = graph["conv"], graph["fc"]
    assert conv.op == "conv2d" and conv.inputs == ("x",)
    assert conv.outputs[0].shape == (1, 8, 8, 8) and conv.outputs[0].dtype == "float32"
    assert conv.output_bytes == 8 * 8 * 8 * 4
    assert conv.param_bytes == (8 * 3 * 3 * 3 + 8) * 4
    assert conv.flops == 2 * (8 * 8 * 8) * (3 * 3 * 3)
    assert fc.flops == 2 * 10 * 128
    assert graph["pool"].flops == 8 * 4 * 4 * 4
    assert graph["x"].op == "input" and graph.input_bytes == 3 * 8 * 8 * 4
    assert graph.outputs == ("fc",)


def test_matmul_flops_count_the_inner_dimension():
    class MatMul(nn.Module):
        def forward(self, a, b):
            return torch.matmul(a, b)

    graph = trace(MatMul(), (torch.randn(2, 5, 7), torch.randn(2, 7, 3)))
    (node,) = graph.compute_nodes
    assert node.op == "matmul" and node.flops == 2 * 2 * 5 * 3 * 7


def test_torch_export_is_the_fallback_for_what_fx_cannot_trace():
    class ShapeBranch(nn.Module):  # fx cannot branch on a traced shape; export specialises it
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.shape[0] > 1:
                return self.fc(x) * 2
            return self.fc(x)

    model = ShapeBranch().eval()
    x = torch.randn(3, 4)
    graph = trace(model, x)
    assert graph.method == "export"
    names = [n.name for n in graph.compute_nodes]
    for cut in range(len(names) + 1):
        stages = split(graph, {n: int(i >= cut) for i, n in enumerate(names)})
        assert torch.equal(run_stages(graph, stages, x), model(x))


def test_untraceable_model_names_the_construct_and_node():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            if y.sum() > 0:  # depends on the values: neither fx nor export can capture it
                return y * 2
            return y

    with pytest.raises(TraceError, match=r"control flow.*after node 'gt'.*if y.sum\(\) > 0"):
        trace(DataDependent(), torch.randn(1, 4))


def test_example_input_of_the_wrong_shape():
    with pytest.raises(ExampleInputError, match=r"\(1, 5, 8, 8\) float32 does not fit SmallNet"):
        trace(SmallNet(), torch.randn(1, 5, 8, 8))
    with pytest.raises(ExampleInputError, match=r"tensor or a non-empty tuple of tensors"):
        trace(SmallNet(), [1, 2])


def _graph(*nodes: Node) -> Graph:
    return Graph("g", {n.name: n for n in nodes}, outputs=(nodes[-1].name,))


def _node(name, inputs=(), **kw):
    return Node(name=name, op=kw.pop("op", "relu"), target=name, inputs=tuple(inputs), outputs=(),
                output_bytes=kw.pop("output_bytes", 4), **kw)


def test_lint_names_the_bad_node():
    with pytest.raises(GraphError, match=r"node 'b' reads unknown input 'zz'"):
        _graph(_node("a"), _node("b", ["zz"])).lint()
    with pytest.raises(GraphError, match=r"node 'a' reads 'b', a node that comes later: .*cycle"):
        _graph(_node("a", ["b"]), _node("b", ["a"])).lint()
    with pytest.raises(GraphError, match=r"node 'a' has negative flops -5"):
        _graph(_node("a", flops=-5)).lint()
    ok = _graph(_node("x", op="input"), _node("a", ["x"]))
    ok.lint()
    with pytest.raises(GraphError, match=r"graph output 'nope' is not a node"):
        dataclasses.replace(ok, outputs=("nope",)).lint()


class _Keep(nn.Module):
    """A detector-like post-processing step: its control flow depends on the values."""

    def forward(self, y):
        if y.sum() > 0:
            return y * 2
        return y - 1


class _WithPost(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.post = _Keep()
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.post(torch.relu(self.fc(x))))


def test_a_leaf_module_is_kept_whole_and_every_split_is_exact():
    model, x = _WithPost().eval(), torch.randn(2, 4)
    with pytest.raises(TraceError, match=r"leaf_modules=\['post'\]"):
        trace(model, x)  # the advice names the block to keep whole
    for leaves in (["post"], [_Keep], "post"):
        graph = trace(model, x, leaf_modules=leaves)
        assert graph.method == "fx"
        names = [n.name for n in graph.compute_nodes]
        assert "post" in names and not any(n.startswith("gt") for n in names)
        for cut in range(len(names) + 1):
            stages = split(graph, {n: int(i >= cut) for i, n in enumerate(names)})
            for sample in (x, -x.abs() - 5):  # both branches of the leaf
                assert torch.equal(run_stages(graph, stages, sample), model(sample))


def test_leaf_modules_that_are_not_submodules_are_named():
    with pytest.raises(TraceError, match=r"leaf_modules names \['nope'\].*'fc'"):
        trace(_WithPost(), torch.randn(1, 4), leaf_modules=["nope"])
    with pytest.raises(TraceError, match="names or classes"):
        trace(_WithPost(), torch.randn(1, 4), leaf_modules=[3])
