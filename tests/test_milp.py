"""The integer program against brute force, with and without side constraints."""
from __future__ import annotations

import dataclasses
import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.planner import brute, milp
from tiercut.planner.problem import (INF, Problem, Side, crossing, evaluate, memory_use,
                                     side_violations, stage_times)

REL = 1e-9


def same(a: float, b: float) -> bool:
    if a == INF or b == INF:
        return a == b
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-300)


def check(problem: Problem, side: Side) -> None:
    want, _ = brute.solve(problem, side)
    got, labels = milp.solve(problem, side)
    assert same(got, want), (got, want, labels)
    if got < INF:
        assert got == evaluate(problem, labels)
        assert side_violations(problem, side, labels) == []
    else:
        assert labels == ()


# -- random problems ----------------------------------------------------------------------

seconds = st.one_of(st.just(0.0), st.floats(1e-6, 1e-1), st.sampled_from([1e-3, 2e-3, 5e-3]))
sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e7), st.sampled_from([1000.0, 4096.0, 1e6]))


@st.composite
def problems(draw) -> Problem:
    k = draw(st.sampled_from([1, 2, 2, 3, 3, 3]))
    n_inputs = draw(st.integers(1, 2))
    n = n_inputs + draw(st.integers(0, 8 - n_inputs))
    preds = [()] * n_inputs
    for v in range(n_inputs, n):
        preds.append(tuple(sorted(draw(st.sets(st.integers(0, v - 1), min_size=1, max_size=3)))))
    pinned = draw(st.booleans())  # inputs pinned to 0 as build() does, or free like any node
    unary = []
    for v in range(n):
        if v < n_inputs and pinned:
            unary.append((0.0,) + (INF,) * (k - 1))
        else:
            unary.append(tuple(INF if draw(st.integers(0, 11)) == 0 else draw(seconds)
                               for _ in range(k)))
    per_byte = (0.0,) + tuple(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-10, 1e-6)),
                                            min_size=k - 1, max_size=k - 1)))
    out_bytes = tuple(draw(st.lists(sizes, min_size=n, max_size=n)))
    constant = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.1)))
    return Problem(tuple(f"n{v}" for v in range(n)), tuple(preds), out_bytes, tuple(unary),
                   per_byte, constant, n_inputs=n_inputs)


def _some_labelling(draw, problem: Problem) -> list[int]:
    """A random labelling that respects data flow (perhaps forbidden by unary)."""
    labels = []
    for v, ps in enumerate(problem.preds):
        low = max((labels[u] for u in ps), default=0)
        labels.append(draw(st.integers(low, problem.labels - 1)))
    return labels


@st.composite
def cases(draw) -> tuple[Problem, Side]:
    problem = draw(problems())
    n, k = len(problem.names), problem.labels
    compute = tuple(((0.0,) * k) if v < problem.n_inputs else
                    tuple(draw(st.lists(seconds, min_size=k, max_size=k))) for v in range(n))
    params = tuple(0.0 if v < problem.n_inputs else draw(sizes) for v in range(n))

    def cap(value_of, total: float) -> float:
        """One labelling's value exactly (binding or just met), a fraction of everything, or
        below zero (nothing meets it)."""
        mode = draw(st.sampled_from(["exact"] * 12 + ["fraction"] * 6 + ["negative"]))
        if mode == "exact":
            return value_of(_some_labelling(draw, problem))
        if mode == "fraction":
            return total * draw(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, 1.0]))
        return -1.0

    def sent(boundary):
        return lambda labels: sum(problem.out_bytes[u] for u in crossing(problem, labels)[boundary])

    def busy(label):
        return lambda labels: sum(compute[v][label] for v in range(problem.n_inputs, n)
                                  if labels[v] == label)

    def memory(label):
        held = Side(compute_s=compute, param_bytes=params)
        return lambda labels: memory_use(problem, held, labels)[label]

    def some(values):  # most cases carry few side constraints, so some are feasible
        return sorted(draw(st.sets(values, max_size=2))) if draw(st.booleans()) else []

    labels = st.integers(0, k - 1)
    side = Side(
        compute_s=compute, param_bytes=params,
        max_bytes=tuple((b, cap(sent(b), sum(problem.out_bytes)))
                        for b in (some(st.integers(1, k - 1)) if k > 1 else [])),
        max_seconds=tuple((lab, cap(busy(lab), sum(c[lab] for c in compute)))
                          for lab in some(labels)),
        max_share=tuple((lab, draw(st.sampled_from([0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0])))
                        for lab in some(labels)),
        max_memory=tuple((lab, cap(memory(lab), sum(params) + sum(problem.out_bytes)))
                         for lab in some(labels)),
        min_nodes=tuple(some(labels)),
    )
    return problem, side


FAST = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(cases())
def test_milp_matches_constrained_brute_force(case):
    check(*case)


@st.composite
def bottleneck_cases(draw) -> tuple[Problem, Side]:
    """A constrained case, plus reply costs per boundary and which nodes are returned."""
    problem, side = draw(cases())
    n, k = len(problem.names), problem.labels
    back = (0.0,) + tuple(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-10, 1e-6)),
                                        min_size=k - 1, max_size=k - 1)))
    returned = tuple(sorted(draw(st.sets(st.integers(problem.n_inputs, max(n - 1, 0)),
                                         max_size=2)))) if n > problem.n_inputs else ()
    return problem, dataclasses.replace(side, back_per_byte=back, returned=returned)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bottleneck_cases())
def test_bottleneck_matches_brute_force(case):
    problem, side = case
    want, _ = brute.solve_bottleneck(problem, side)
    got, labels = milp.solve_bottleneck(problem, side)
    assert same(got, want), (got, want, labels)
    if got < INF:
        assert got == max(stage_times(problem, side, labels))
        assert side_violations(problem, side, labels) == []
        # among the labellings tied at the bottleneck, the lowest latency objective
        tied, _ = brute.solve(problem, side, lambda ls: evaluate(problem, ls)
                              if max(stage_times(problem, side, ls)) <= got else INF)
        assert evaluate(problem, labels) <= tied * (1 + 1e-9) + 1e-12


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_milp_without_side_constraints_matches_brute(problem):
    n, k = len(problem.names), problem.labels
    side = Side(compute_s=((0.0,) * k,) * n, param_bytes=(0.0,) * n)
    got, labels = milp.solve(problem, side)
    want, _ = brute.solve(problem)
    assert same(got, want), (got, want)
    if got < INF:
        assert got == evaluate(problem, labels)


# -- hand-built cases ---------------------------------------------------------------------

def chain(unary, out_bytes, per_byte=(0.0, 1e-6)) -> Problem:
    """input -> a -> b -> ..., one node reading the last."""
    n = len(unary)
    return Problem(tuple(f"n{v}" for v in range(n)), ((),) + tuple((v - 1,) for v in range(1, n)),
                   tuple(out_bytes), tuple(tuple(u) for u in unary), tuple(per_byte), 0.01)


def plain_side(problem: Problem, **kw) -> Side:
    n, k = len(problem.names), problem.labels
    kw.setdefault("compute_s", tuple(((0.0,) * k if v == 0 else tuple(problem.unary[v]))
                                     for v in range(n)))
    kw.setdefault("param_bytes", (0.0,) * n)
    return Side(**kw)


def test_byte_cap_forces_a_later_cut():
    # Offloading is much faster, and right after the input is best, but the input's 10 kB
    # are over the cap; only the small tensor b produces fits.
    p = chain([(0.0, INF), (0.05, 0.001), (0.05, 0.001), (0.05, 0.001)],
              [10_000.0, 50_000.0, 1_000.0, 10.0])
    free, labels = milp.solve(p, plain_side(p))
    assert labels == (0, 1, 1, 1)
    capped, labels = milp.solve(p, plain_side(p, max_bytes=((1, 1_000.0),)))
    assert labels == (0, 0, 0, 1)
    assert capped > free
    assert math.isclose(capped, 0.01 + 0.05 + 0.05 + 0.001 + 1e-6 * 1_000, rel_tol=REL)
    check(p, plain_side(p, max_bytes=((1, 1_000.0),)))
    # Below b's 1000 bytes nothing may cross: all on the device, or nothing when the second
    # tier must run a node.
    assert milp.solve(p, plain_side(p, max_bytes=((1, 5.0),)))[1] == (0, 0, 0, 0)
    assert milp.solve(p, plain_side(p, max_bytes=((1, 5.0),), min_nodes=(1,)))[0] == INF


def test_required_label_runs_a_node():
    # Everything is cheaper on the device; min_nodes still puts the cheapest move upstream.
    p = chain([(0.0, INF), (0.01, 0.02), (0.01, 0.03), (0.01, 0.011)], [10.0, 10.0, 10.0, 10.0])
    assert milp.solve(p, plain_side(p))[1] == (0, 0, 0, 0)
    cost, labels = milp.solve(p, plain_side(p, min_nodes=(1,)))
    assert labels == (0, 0, 0, 1)
    assert math.isclose(cost, 0.01 + 0.01 + 0.01 + 0.011 + 1e-6 * 10, rel_tol=REL)


def test_memory_cap_moves_nodes_off_the_device():
    p = chain([(0.0, INF, INF), (0.001, 0.01, 0.02), (0.001, 0.01, 0.02), (0.001, 0.01, 0.02)],
              [100.0, 100.0, 100.0, 100.0], per_byte=(0.0, 1e-7, 1e-7))
    params = (0.0, 1000.0, 1000.0, 1000.0)
    # The device holds the 100-byte input and 1100 bytes per node (parameters and output).
    side = plain_side(p, param_bytes=params, max_memory=((0, 2300.0),))
    cost, labels = milp.solve(p, side)
    assert labels == (0, 0, 0, 1)  # two nodes fit on the device, not three
    check(p, side)
    # Each later label also holds the 100-byte tensor it receives.
    side = plain_side(p, param_bytes=params, max_memory=((0, 1200.0), (1, 1200.0)))
    assert milp.solve(p, side)[1] == (0, 0, 1, 2)
    check(p, side)
    side = plain_side(p, param_bytes=params, max_memory=((0, 0.0), (1, 0.0), (2, 1100.0)))
    assert milp.solve(p, side)[0] == INF


def test_share_cap_does_not_count_a_fake_crossing(monkeypatch):
    # A share cap has the total on its right-hand side, so a crossing variable left free to
    # rise would make the all-device labelling look legal (1 s of compute would be half of a
    # total inflated by a 1 s crossing that does not happen). The program pins crossings
    # exactly, so HiGHS never proposes a labelling the exact check then has to cut off.
    rejected = []
    broken = milp._broken
    monkeypatch.setattr(milp, "_broken", lambda *a: broken(*a) and not rejected.append(a[2]))
    p = Problem(("in", "a"), ((), (0,)), (1.0, 1.0), ((0.0, INF), (1.0, 3.0)), (0.0, 1.0), 0.0)
    side = Side(compute_s=((0.0, 0.0), (1.0, 3.0)), param_bytes=(0.0, 0.0),
                max_share=((0, 0.5),))
    assert milp.solve(p, side) == (4.0, (0, 1))
    assert rejected == []
    check(p, side)
    p = chain([(0.0, INF), (0.01, 0.001), (0.01, 0.001)], [1e6, 1e6, 1e6], per_byte=(0.0, 1e-7))
    for share in (0.0, 0.3, 0.5, 0.9, 1.0):
        check(p, plain_side(p, max_share=((0, share),)))
        check(p, plain_side(p, max_share=((1, share),)))


def test_a_labelling_a_hair_over_a_cap_is_cut_off(monkeypatch):
    # 1e-10 over the cap is inside HiGHS's tolerances but outside side_violations': the exact
    # check rejects it and the program is solved again without it.
    rejected = []
    broken = milp._broken
    monkeypatch.setattr(milp, "_broken", lambda *a: broken(*a) and not rejected.append(a[2]))
    p = chain([(0.0, INF), (0.05, 0.001), (0.05, 0.001), (0.05, 0.001)],
              [10_000.0, 50_000.0, 1_000.0, 10.0])
    side = plain_side(p, max_bytes=((1, 1_000.0 * (1 - 1e-10)),))
    assert milp.solve(p, side)[1] == (0, 0, 0, 0)
    assert rejected == [(0, 0, 0, 1)]
    check(p, side)


def test_differences_far_below_the_largest_cost_still_decide():
    # Every node has a 1e3 s label it never takes, and two labels whose costs differ by
    # 1e-12..1e-9 s on a total of a few ms: 1e-15 of the largest coefficient, far below
    # HiGHS's tolerances on pass 1's scale; pass 2 rescales to the optimum and decides.
    rng = random.Random(1)
    for _ in range(25):
        n = 8
        unary = [(0.0, INF, INF)]
        for _ in range(1, n):
            x = 1e-3 * rng.random()
            unary.append((x, x + rng.choice([-1, 1]) * rng.random() * 5e-12 * rng.choice([1, 10, 100]),
                          x + 1e3 * rng.random()))
        p = Problem(tuple(map(str, range(n))), ((),) + tuple((rng.randrange(v),) for v in range(1, n)),
                    (0.0,) * n, tuple(unary), (0.0, 0.0, 0.0), 0.0)
        got, labels = milp.solve(p, plain_side(p))
        assert same(got, brute.solve(p)[0])
