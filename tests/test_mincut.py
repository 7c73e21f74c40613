"""The K-tier min-cut against brute force: the same optimum on random DAGs, and hand-made cases."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.planner import brute, mincut
from tiercut.planner.problem import INF, Problem, evaluate

REL = 1e-9


def same(a: float, b: float) -> bool:
    if a == INF or b == INF:
        return a == b
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-300)


def check(problem: Problem) -> tuple[float, tuple[int, ...]]:
    want, _ = brute.solve(problem)
    got, labels = mincut.solve(problem)
    assert same(got, want), (got, want, labels)
    if got < INF:
        assert got == evaluate(problem, labels)
        assert len(labels) == len(problem.names)
    else:
        assert labels == ()
    return got, labels


def make(preds, unary, out_bytes, per_byte, constant=0.0) -> Problem:
    n = len(preds)
    return Problem(tuple(f"n{v}" for v in range(n)), tuple(tuple(p) for p in preds),
                   tuple(float(b) for b in out_bytes), tuple(tuple(map(float, r)) for r in unary),
                   tuple(map(float, per_byte)), float(constant))


# -- random problems ----------------------------------------------------------------------

costs = st.one_of(st.just(0.0), st.just(INF), st.floats(1e-6, 1.0),
                  st.sampled_from([1e-3, 2e-3, 5e-3, 1.0]), st.floats(-1.0, 1.0))
sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e7), st.sampled_from([1000.0, 4096.0, 1e6]))
rates = st.one_of(st.just(0.0), st.floats(1e-9, 1e-5), st.sampled_from([8e-8, 8e-9, 1e-6]))


@st.composite
def problems(draw) -> Problem:
    k = draw(st.integers(1, 4))
    n_inputs = draw(st.integers(1, 2))
    most = 9 if k <= 3 else 7  # brute force is exponential
    n = n_inputs + draw(st.integers(0, most - n_inputs))
    preds = [()] * n_inputs
    for v in range(n_inputs, n):
        # repeats allowed: a node may read the same tensor twice
        preds.append(tuple(draw(st.lists(st.integers(0, v - 1), min_size=1, max_size=4))))
    unary = [(0.0,) + (INF,) * (k - 1)] * n_inputs
    unary += [tuple(draw(costs) for _ in range(k)) for _ in range(n_inputs, n)]
    out_bytes = [draw(sizes) for _ in range(n)]
    per_byte = [0.0] + [draw(rates) for _ in range(k - 1)]
    return make(preds, unary, out_bytes, per_byte, draw(st.floats(0.0, 1.0)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_optimum_equals_brute_force(problem):
    check(problem)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1))
def test_wide_magnitudes_stay_exact(problem, seed):
    """Costs spread over many orders of magnitude: the integer scaling must stay exact."""
    rng = random.Random(seed)
    scales = [1e-12, 1e-3, 1.0, 1e6, 1e12]
    unary = tuple(row if v < 1 else tuple(c * rng.choice(scales) for c in row)
                  for v, row in enumerate(problem.unary))
    per_byte = (0.0,) + tuple(c * rng.choice(scales) for c in problem.per_byte[1:])
    check(Problem(problem.names, problem.preds, problem.out_bytes, unary, per_byte,
                  problem.constant))


# -- hand-made cases ----------------------------------------------------------------------


def test_tensor_with_two_consumers_beyond_a_boundary_pays_once():
    # input -> a; a is read by b and c; b and c are much cheaper remotely, a is not.
    preds = [(), (0,), (1,), (1,)]
    unary = [(0, INF), (0, 10), (10, 0), (10, 0)]
    out_bytes = [1, 4, 0, 0]
    problem = make(preds, unary, out_bytes, [0, 1.0])
    cost, labels = check(problem)
    assert labels == (0, 0, 1, 1)
    assert cost == 4.0  # a's 4 bytes cross once, not once per consumer


def test_tensor_crossing_two_boundaries_pays_each():
    # a on the device, its one consumer on label 2: a crosses boundaries 1 and 2.
    preds = [(), (0,), (1,)]
    unary = [(0, INF, INF), (0, 50, 50), (50, 50, 0)]
    problem = make(preds, unary, [1, 3, 0], [0, 1.0, 2.0])
    cost, labels = check(problem)
    assert labels == (0, 0, 2)
    assert cost == 3 * 1.0 + 3 * 2.0


def test_chain_cuts_at_the_smallest_tensor():
    # Nodes 1 and 2 are cheaper on the device, 3 and 4 remotely, and node 2's output is the
    # smallest tensor: the one cut goes right after it.
    preds = [(), (0,), (1,), (2,), (3,)]
    unary = [(0, INF), (1, 5), (1, 5), (5, 1), (5, 1)]
    out_bytes = [100, 50, 2, 40, 0]
    problem = make(preds, unary, out_bytes, [0, 0.1])
    cost, labels = check(problem)
    assert labels == (0, 0, 0, 1, 1)
    assert cost == 1 + 1 + 1 + 1 + 0.2


def test_forbidden_labels_and_infeasible():
    preds = [(), (0,), (1,)]
    # node 1 may only run remotely, node 2 only on the device: data would flow backward
    unary = [(0, INF), (INF, 1), (1, INF)]
    problem = make(preds, unary, [1, 1, 0], [0, 1.0])
    assert mincut.solve(problem) == (INF, ())
    assert brute.solve(problem)[0] == INF
    # a node with no allowed label at all
    problem = make([(), (0,)], [(0, INF), (INF, INF)], [1, 1], [0, 1.0])
    assert mincut.solve(problem) == (INF, ())


def test_one_label_is_all_zeros():
    problem = make([(), (0,), (0, 1)], [(0,), (2,), (3,)], [1, 1, 1], [0], constant=0.5)
    assert mincut.solve(problem) == (5.5, (0, 0, 0))
    problem = make([(), (0,)], [(0,), (INF,)], [1, 1], [0])
    assert mincut.solve(problem) == (INF, ())


def test_infinite_costs_far_from_the_optimum_do_not_disturb_it():
    # Huge but finite costs next to infinite ones, and a tensor whose crossing is forbidden.
    preds = [(), (0,), (1,), (1, 2)]
    unary = [(0, INF, INF), (1e300, 1, INF), (5, 1e-300, 0), (INF, 3, 1)]
    problem = make(preds, unary, [1e6, 1, 1e308, 0], [0, 1e-6, 1e10])
    check(problem)


def test_negative_transfer_cost_is_refused():
    problem = make([(), (0,)], [(0, INF), (1, 0)], [1, -1], [0, 1.0])
    with pytest.raises(ValueError, match="per-byte costs >= 0"):
        mincut.solve(problem)


def test_nodes_out_of_order_are_refused():
    problem = make([(), (2,), (0,)], [(0, INF), (1, 0), (1, 0)], [1, 1, 1], [0, 1.0])
    with pytest.raises(ValueError, match="topological order"):
        mincut.solve(problem)
