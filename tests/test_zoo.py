"""Every zoo model: trace, lint, count its FLOPs against the published figure, then split at
random valid assignments into 2 and 3 stages; the stages run in order equal the eager model bit
for bit."""
import random

import pytest
import torch

from tiercut import run_stages, split, trace, zoo
from tiercut.graph.flops import macs

from assignments import assert_same, chain_cut, random_assignment

ASSIGNMENTS_PER_STAGE_COUNT = 10  # x2 stage counts = 20 per model


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_model_splits_equal_the_whole(name):
    entry = zoo.entry(name)
    model, inputs = entry.build(), entry.example_inputs()
    graph = trace(model, inputs, name=name)
    graph.lint()
    if entry.macs is not None:  # published tables count conv/linear/matmul multiply-adds
        counted = sum(macs(n.op, n.flops) for n in graph)
        assert abs(counted / entry.macs - 1) <= 0.02, f"{name}: {counted:.4g} MACs, published {entry.macs:.4g}"
    with torch.inference_mode():
        expected = model(*inputs)
        rng = random.Random(name)
        for stages in (2, 3):
            for i in range(ASSIGNMENTS_PER_STAGE_COUNT):
                make = chain_cut if i % 2 else random_assignment
                assignment = make(graph, stages, rng)
                assert_same(run_stages(graph, split(graph, assignment), *inputs), expected)


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(zoo.registry.UnknownModelError, match=r"unknown model 'resnet1000'.*resnet50"):
        zoo.entry("resnet1000")
