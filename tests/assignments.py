"""Random valid assignments of nodes to stages, for the equivalence tests."""
import random

import torch


def random_assignment(graph, stages: int, rng: random.Random) -> dict[str, int]:
    """A random assignment that respects data flow: each node's stage >= its inputs' stages."""
    stage = {name: 0 for name in graph.inputs}
    for node in graph.compute_nodes:
        low = max((stage[s] for s in node.inputs), default=0)
        jump = rng.random() < 3 / len(graph.compute_nodes)  # a few jumps, whatever the size
        stage[node.name] = rng.randint(low, stages - 1) if jump else low
    return {n.name: stage[n.name] for n in graph.compute_nodes}


def chain_cut(graph, stages: int, rng: random.Random) -> dict[str, int]:
    """Cut the topological order at stages-1 random positions."""
    names = [n.name for n in graph.compute_nodes]
    cuts = sorted(rng.sample(range(len(names) + 1), stages - 1))
    return {name: sum(i >= c for c in cuts) for i, name in enumerate(names)}


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b
