"""Splitting must never change a model's answer: the stages in order equal the whole model."""
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from tiercut import AssignmentError, run_stages, split, trace

from assignments import assert_same, random_assignment
from userzoo import UsesSize


class RandomDag(nn.Module):
    """A small DAG: each layer combines one or two earlier values with a random op."""

    def __init__(self, spec: list[tuple[int, int, int]], width: int = 6):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in spec)

    def forward(self, x):
        values = [x]
        for (op, a, b), layer in zip(self.spec, self.layers):
            u, v = values[a % len(values)], values[b % len(values)]
            if op == 0:
                values.append(layer(u))
            elif op == 1:
                values.append(torch.relu(u) + v)
            elif op == 2:
                values.append(layer(u) * torch.sigmoid(v))
            else:
                values.append(torch.cat([u, v], dim=1)[:, : u.shape[1]])
        return values[-1], values[len(values) // 2]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50), st.integers(0, 50)),
                     min_size=1, max_size=14),
       seed=st.integers(0, 2**16), stages=st.integers(2, 3))
def test_random_dags_split_equal_whole(spec, seed, stages):
    model = RandomDag(spec).eval()
    x = torch.randn(2, 6)
    graph = trace(model, x)
    expected = model(x)
    rng = random.Random(seed)
    for _ in range(3):
        stages_ = split(graph, random_assignment(graph, stages, rng))
        assert_same(run_stages(graph, stages_, x), expected)


def test_every_stage_reads_only_what_crosses():
    model = RandomDag([(0, 0, 0), (1, 1, 0), (2, 2, 1), (0, 3, 3)]).eval()
    x = torch.randn(1, 6)
    graph = trace(model, x)
    names = [n.name for n in graph.compute_nodes]
    stages = split(graph, {n: (0 if i < 3 else 1) for i, n in enumerate(names)})
    produced_before = set(graph.inputs) | set(stages[0].nodes)
    assert set(stages[1].inputs) <= produced_before
    assert set(stages[0].outputs) == set(stages[1].inputs) & set(stages[0].nodes) | (
        set(graph.outputs) & set(stages[0].nodes))


def test_backward_assignment_names_the_edge():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    graph = trace(model, torch.randn(1, 4))
    first, second, _ = (n.name for n in graph.compute_nodes)
    a = {n.name: 0 for n in graph.compute_nodes}
    a[first] = 1
    with pytest.raises(AssignmentError, match=rf"edge {first} -> {second} sends data backward"):
        split(graph, a)


def test_assignment_with_unknown_or_missing_nodes():
    graph = trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval(), torch.randn(1, 4))
    a, b = (n.name for n in graph.compute_nodes)
    with pytest.raises(AssignmentError, match=r"unknown nodes \['nope'\]"):
        split(graph, {a: 0, b: 0, "nope": 1})
    with pytest.raises(AssignmentError, match=r"leaves 1 nodes without a stage"):
        split(graph, {a: 0})
    with pytest.raises(AssignmentError, match=r"stage -1"):
        split(graph, {a: 0, b: -1})


def test_values_that_are_not_tensors_cross_stages():
    model = UsesSize().eval()
    x = torch.randn(2, 3, 8, 8)
    graph = trace(model, x)
    names = [n.name for n in graph.compute_nodes]
    for cut in range(len(names) + 1):
        stages = split(graph, {n: int(i >= cut) for i, n in enumerate(names)})
        assert torch.equal(run_stages(graph, stages, x), model(x))
