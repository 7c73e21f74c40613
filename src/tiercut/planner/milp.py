"""The integer program: the exact optimum with the side constraints min-cut cannot carry.

The program's variables and rows are built in ``milp_model``; this module solves them.

Exactness, as floating point allows it:

* HiGHS runs with zero MIP gaps and 1e-9 tolerances, without presolve (see HIGHS_OPTIONS).
* The objective is solved twice: scaled so its largest coefficient is 1, then scaled to the
  optimum found, so that differences of 1e-9 of the optimum decide even when the optimum is
  far below the largest cost; the better labelling by ``evaluate`` wins.
* Every answer is recomputed with ``evaluate`` and checked with ``side_violations``. The side
  rows carry a little more room than the caps (``milp_model.ROW_SLACK``, so HiGHS's rounding
  never cuts off a labelling exactly at a cap); a labelling HiGHS accepts within that room but
  the exact check does not is cut off (a no-good cut on y) and the program solved again. So
  the answer always honours every side constraint exactly.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from .milp_model import Program, accumulate, build_program
from .problem import INF, Problem, Side, evaluate, side_violations, stage_times
from .quiet import quiet_stdout

REFINE = 0.01  # pass 2 scales the objective to this fraction of pass 1's optimum
MAX_CUTS = 200  # no-good cuts before giving up (each removes one labelling HiGHS misjudged)
# HiGHS (1.12, as scipy 1.17 ships it) with zero MIP gaps and tight tolerances, so that cost
# differences of 1e-9 of the total still decide. Its presolve misjudged some small programs
# (a wrong "infeasible", a wrong "optimal"), so it is off; it also costs more than it saves
# here. Tight tolerances now and then end in a solve error: then the fallbacks run in turn.
HIGHS_OPTIONS = {
    "presolve": False,
    "mip_rel_gap": 0.0,
    "mip_abs_gap": 0.0,
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
    "mip_feasibility_tolerance": 1e-9,
}
FALLBACK_OPTIONS = (
    {"mip_feasibility_tolerance": 1e-7},
    {"mip_feasibility_tolerance": 1e-7, "presolve": True},
)


def solve(problem: Problem, side: Side) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels) honouring every side constraint; (inf, ()) when none does."""
    trivial = _trivial(problem, side, lambda labels: evaluate(problem, labels))
    if trivial is not None:
        return trivial
    built = build_program(problem, side)
    if built is None:
        return INF, ()
    prog, obj, obj_const = built.prog, built.obj, built.obj_const

    # Pass 1 scales the objective so its largest coefficient is 1. HiGHS resolves the
    # objective to about its tolerance on that scale, which can be coarser than 1e-9 of the
    # optimum when the optimum avoids every expensive option; pass 2 then solves again with
    # the objective scaled to the optimum found, and the better labelling (exactly) wins.
    biggest = max((abs(a) for a in obj.values()), default=0.0) or 1.0
    integrality = np.zeros(prog.n_vars)
    integrality[:prog.n_y] = 1
    bounds = Bounds(np.array(prog.lb), np.array(prog.ub))

    def objective(scale: float) -> np.ndarray:
        cvec = np.zeros(prog.n_vars)
        for col, a in obj.items():
            cvec[col] = a / scale
        return cvec

    best = _optimise(problem, side, prog, objective(biggest), integrality, bounds)
    total = best[0]
    if 0 < abs(total) < INF and biggest > REFINE * abs(total):
        scale = max(REFINE * abs(total), biggest * 1e-12)
        # Only a better labelling is of interest: prune above pass 1's (a hair above, so
        # HiGHS's rounding cannot prune pass 1's labelling itself).
        bound = (total - obj_const) / scale + 1e-6
        try:
            again = _optimise(problem, side, prog, objective(scale), integrality, bounds,
                              {"objective_bound": bound}, fallbacks=False)
        except RuntimeError:  # pass 1's answer stands
            again = (INF, ())
        if again[0] < total:
            best = again
    return best


def _trivial(problem: Problem, side: Side, cost: Callable[[Sequence[int]], float]
             ) -> tuple[float, tuple[int, ...]] | None:
    """The answer when there is at most one labelling (all zeros); None otherwise."""
    n, k = len(problem.names), problem.labels
    if k < 1:
        return INF, ()
    _check_indices(problem, side)
    if n and k > 1:
        return None
    labels = (0,) * n
    value = cost(labels)
    if value < INF and not _broken(problem, side, labels):
        return value, labels
    return INF, ()


def bottleneck(problem: Problem, side: Side, labels: Sequence[int]) -> float:
    """The slowest pipeline stage of a labelling (inf when it is forbidden)."""
    if evaluate(problem, labels) == INF:
        return INF
    return max(stage_times(problem, side, labels))


def solve_bottleneck(problem: Problem, side: Side) -> tuple[float, tuple[int, ...]]:
    """(shortest slowest stage, labels): the best throughput of a stream, one request per that
    many seconds, honouring every side constraint. Among labellings with that bottleneck the
    one with the lowest latency objective is preferred.

    The program adds a column T and a row "stage <= T" for every label's compute, every
    boundary's forward transfer and every boundary's reply; it minimises T. HiGHS's answer is
    then improved until no labelling with an exactly shorter bottleneck (by 1e-9 relative)
    remains, and last the latency objective picks among the labellings tied at it.
    """
    def cost(labels: Sequence[int]) -> float:
        return bottleneck(problem, side, labels)

    trivial = _trivial(problem, side, cost)
    if trivial is not None:
        return trivial
    built = build_program(problem, side, all_crossings=True)
    if built is None:
        return INF, ()
    prog, k = built.prog, problem.labels
    t = prog.new_var(0.0, INF)
    for label in range(k):
        coef, const = built.seconds(problem, side, label)
        prog.add({**coef, t: -1.0}, const, -INF, 0.0)
    for i in range(1, k):
        coef = {col: problem.per_byte[i] * problem.out_bytes[u]
                for (u, b), col in built.z.items() if b == i}
        prog.add({**coef, t: -1.0}, 0.0, -INF, 0.0)
    for i in range(1, len(side.back_per_byte)):
        coef = {}
        for u in side.returned:
            if u >= problem.n_inputs:
                accumulate(coef, {prog.y(u, i): side.back_per_byte[i] * problem.out_bytes[u]})
        prog.add({**coef, t: -1.0}, 0.0, -INF, 0.0)
    if prog.infeasible:
        return INF, ()
    integrality = np.zeros(prog.n_vars)
    integrality[:prog.n_y] = 1
    cvec = np.zeros(prog.n_vars)
    cvec[t] = 1.0

    def bounds(t_max: float) -> Bounds:
        ub = list(prog.ub)
        ub[t] = t_max
        return Bounds(np.array(prog.lb), np.array(ub))

    best = _optimise(problem, side, prog, cvec, integrality, bounds(INF), cost=cost)
    for _ in range(MAX_CUTS):  # is there an exactly shorter bottleneck?
        if not 0 < best[0] < INF:
            break
        try:  # on a copy: its cuts also remove labellings tied with the best
            better = _optimise(problem, side, prog.copy(), cvec, integrality,
                               bounds(best[0] * (1 - 1e-9)), fallbacks=False, cost=cost,
                               accept=lambda labels, value: value < best[0])
        except RuntimeError:
            break
        if not better[0] < best[0]:
            break
        best = better
    if best[0] == INF:
        return best
    # Among the labellings tied at the bottleneck, the lowest latency objective.
    scale = max((abs(a) for a in built.obj.values()), default=0.0) or 1.0
    latency = np.zeros(prog.n_vars)
    for col, a in built.obj.items():
        latency[col] = a / scale
    try:
        tied = _optimise(problem, side, prog, latency, integrality,
                         bounds(best[0] * (1 + 1e-9)), fallbacks=False, cost=cost,
                         accept=lambda labels, value: value <= best[0], max_cuts=20)
    except RuntimeError:
        return best
    return tied if tied[0] <= best[0] else best


def _optimise(problem: Problem, side: Side, prog: Program, cvec, integrality, bounds,
              options: dict | None = None, fallbacks: bool = True,
              cost: Callable[[Sequence[int]], float] | None = None,
              accept: Callable[[Sequence[int], float], bool] | None = None,
              max_cuts: int = MAX_CUTS) -> tuple[float, tuple[int, ...]]:
    """HiGHS's best labelling that honours ``side`` exactly, cutting off any it accepted only
    within its tolerances. ``cost`` (default: the problem's objective) prices a labelling;
    ``accept`` may refuse more (a labelling no better than one already found)."""
    n, k = prog.n, prog.k
    cost = cost or (lambda labels: evaluate(problem, labels))
    for _ in range(max_cuts):
        x = _run(prog, cvec, integrality, bounds, options or {}, fallbacks)
        if x is None:
            return INF, ()
        ys = x[:prog.n_y].reshape(n, k - 1) > 0.5
        labels = tuple(int(row.sum()) for row in ys)
        value = cost(labels)
        if value < INF and not _broken(problem, side, labels) and (
                accept is None or accept(labels, value)):
            return value, labels
        # HiGHS took a labelling its tolerances allow and the exact check does not: cut it off.
        cut: dict[int, float] = {}
        const = 0.0
        for v in range(n):
            for j in range(1, k):
                col = prog.y(v, j)
                if prog.lb[col] == prog.ub[col]:
                    continue
                if ys[v, j - 1]:
                    cut[col] = -1.0
                    const += 1.0
                else:
                    cut[col] = 1.0
        prog.add(cut, const, 1.0, INF)
        if prog.infeasible:
            return INF, ()
    raise RuntimeError(f"the integer program kept returning labellings that break the side "
                       f"constraints after {max_cuts} cuts")


def _broken(problem: Problem, side: Side, labels) -> bool:
    return bool(side_violations(problem, side, labels))


def _run(prog: Program, cvec, integrality, bounds, options: dict, fallbacks: bool):
    """HiGHS's solution vector, or None when the program is infeasible. An attempt that ends
    without a solution (a solve error, or "infeasible") is tried again with each fallback."""
    constraints = []
    if prog.rows:
        data, rows, cols = [], [], []
        lo, hi = [], []
        for r, (coef, a, b) in enumerate(prog.rows):
            for col, val in coef.items():
                rows.append(r)
                cols.append(col)
                data.append(val)
            lo.append(a)
            hi.append(b)
        matrix = csr_matrix((data, (rows, cols)), shape=(len(prog.rows), prog.n_vars))
        constraints.append(LinearConstraint(matrix, np.array(lo), np.array(hi)))
    failures = []
    for extra in ({}, *(FALLBACK_OPTIONS if fallbacks else ())):
        with warnings.catch_warnings(), quiet_stdout():
            # the options beyond scipy's own list go to HiGHS verbatim, with a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            res = milp(cvec, integrality=integrality, bounds=bounds, constraints=constraints,
                       options={**HIGHS_OPTIONS, **options, **extra})
        if res.x is not None:
            return np.asarray(res.x)
        failures.append(res)
    if any(res.status == 2 for res in failures):  # infeasible
        return None
    raise RuntimeError(f"the integer program failed: {failures[0].message}")


def _check_indices(problem: Problem, side: Side) -> None:
    k = problem.labels
    for boundary, _ in side.max_bytes:
        if not 0 <= boundary < k:
            raise ValueError(f"max_bytes names boundary {boundary}; the route has 1..{k - 1}")
    for label in [*(lab for lab, _ in side.max_seconds), *(lab for lab, _ in side.max_share),
                  *(lab for lab, _ in side.max_memory), *side.min_nodes]:
        if not 0 <= label < k:
            raise ValueError(f"side constraint names label {label}; the route has 0..{k - 1}")
