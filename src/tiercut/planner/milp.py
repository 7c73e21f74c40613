"""The integer program: the exact optimum with the side constraints min-cut cannot carry.

Variables (HiGHS through ``scipy.optimize.milp``):

* ``y[v][j]`` binary for j = 1..K-1: label(v) >= j. Nested (y[v][j] >= y[v][j+1]), so the
  label is Σ_j y[v][j] and "v runs at label l" is x[v][l] = y[v][l] - y[v][l+1] with
  y[v][0] = 1 and y[v][K] = 0. Every per-label quantity (unary cost, compute seconds, memory,
  node counts) is linear in y through x.
* ``z[u][i]`` continuous in [0, 1]: tensor u crosses boundary i. z >= y[v][i] - y[u][i] for
  every consumer v, so z is at least the true crossing; where z could gain from being larger
  (a negative cost, or a ``max_share`` row where the total is on the right-hand side) it is
  also capped by z <= 1 - y[u][i] and z <= Σ_v y[v][i], which pin it to the true crossing
  once y is integral.

Forbidden labels (inf unary) become bounds on y, or y[v][l] = y[v][l+1] rows for a gap in the
middle; nothing infinite reaches HiGHS. Each row is scaled so its largest coefficient is 1.

Exactness, as floating point allows it:

* HiGHS runs with zero MIP gaps and 1e-9 tolerances, without presolve (see HIGHS_OPTIONS).
* The objective is solved twice: scaled so its largest coefficient is 1, then scaled to the
  optimum found, so that differences of 1e-9 of the optimum decide even when the optimum is
  far below the largest cost; the better labelling by ``evaluate`` wins.
* Every answer is recomputed with ``evaluate`` and checked with ``side_violations``. The side
  rows carry a little more room than the caps (ROW_SLACK, so HiGHS's rounding never cuts off
  a labelling exactly at a cap); a labelling HiGHS accepts within that room but the exact
  check does not is cut off (a no-good cut on y) and the program solved again. So the answer
  always honours every side constraint exactly.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from .problem import INF, Problem, Side, evaluate, side_violations, stage_times

SLACK = 1e-12  # the relative slack side_violations grants every cap
ROW_SLACK = 1e-9  # extra room on each scaled side row, above HiGHS's rounding
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


class _Program:
    """Rows of a MILP over y (and z), built as sparse linear expressions."""

    def __init__(self, n: int, k: int) -> None:
        self.n, self.k = n, k
        self.n_y = n * (k - 1)
        self.n_vars = self.n_y
        self.lb: list[float] = [0.0] * self.n_y
        self.ub: list[float] = [1.0] * self.n_y
        self.rows: list[tuple[dict[int, float], float, float]] = []
        self.infeasible = False

    def copy(self) -> "_Program":
        """A copy whose new rows (cuts) leave this program as it is."""
        other = _Program(self.n, self.k)
        other.__dict__.update(self.__dict__)
        other.lb, other.ub, other.rows = list(self.lb), list(self.ub), list(self.rows)
        return other

    def y(self, v: int, j: int) -> int:
        return v * (self.k - 1) + (j - 1)

    def new_var(self, lb: float, ub: float) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.n_vars += 1
        return self.n_vars - 1

    def per_label(self, v: int, values) -> tuple[dict[int, float], float]:
        """Σ_l values[l] · x[v][l] as (coefficients on y, constant)."""
        coef: dict[int, float] = {}
        for j in range(1, self.k):
            d = values[j] - values[j - 1]
            if d:
                coef[self.y(v, j)] = d
        return coef, values[0]

    def indicator(self, v: int, label: int) -> tuple[dict[int, float], float]:
        """x[v][label] = y[v][label] - y[v][label+1]."""
        coef: dict[int, float] = {}
        const = 0.0
        if label == 0:
            const = 1.0
        else:
            coef[self.y(v, label)] = 1.0
        if label + 1 < self.k:
            coef[self.y(v, label + 1)] = coef.get(self.y(v, label + 1), 0.0) - 1.0
        return coef, const

    def add(self, coef: dict[int, float], const: float, lo: float, hi: float,
            slack: float = 0.0) -> None:
        """lo <= Σ coef·var + const <= hi, scaled so the largest coefficient is 1; ``slack``
        widens the scaled upper side."""
        coef = {c: a for c, a in coef.items() if a}
        lo, hi = lo - const, hi - const
        if not coef:
            if lo > 0 or hi < 0:
                self.infeasible = True
            return
        scale = max(abs(a) for a in coef.values())
        self.rows.append(({c: a / scale for c, a in coef.items()}, lo / scale,
                          hi / scale + slack))


def _accumulate(into: dict[int, float], coef: dict[int, float], factor: float = 1.0) -> None:
    for c, a in coef.items():
        into[c] = into.get(c, 0.0) + factor * a


def _fill(values: list[float], allowed: list[bool]) -> list[float]:
    """Forbidden entries take a neighbouring allowed value: x is 0 there, so any finite value
    is correct, and a copy keeps the coefficients on y small."""
    out = list(values)
    first = next(i for i, ok in enumerate(allowed) if ok)
    last = None
    for i in range(len(out)):
        if allowed[i]:
            last = out[i]
        else:
            out[i] = out[first] if last is None else last
    return out


@dataclass
class _Built:
    """A program with every row but the objective's, and the objective as coefficients."""

    prog: _Program
    obj: dict[int, float]  # the latency-style objective on y and z
    obj_const: float
    allowed: list[list[bool]]
    z: dict[tuple[int, int], int]  # (tensor, boundary) -> column

    def seconds(self, problem: Problem, side: Side, label: int) -> tuple[dict[int, float], float]:
        """Compute seconds at ``label`` as coefficients on y plus a constant."""
        coef: dict[int, float] = {}
        const = 0.0
        for v in range(problem.n_inputs, len(problem.names)):
            if self.allowed[v][label]:
                c, k0 = self.prog.indicator(v, label)
                _accumulate(coef, c, side.compute_s[v][label])
                const += k0 * side.compute_s[v][label]
        return coef, const


def _build(problem: Problem, side: Side, all_crossings: bool = False) -> _Built | None:
    """Every row but the objective's; None when the program is plainly infeasible.
    ``all_crossings``: a z column for every tensor that can cross, not only for those the
    objective or a byte cap prices."""
    n, k = len(problem.names), problem.labels
    prog = _Program(n, k)
    seconds_capped = {lab for lab, _ in side.max_seconds} | {lab for lab, _ in side.max_share}
    # Which labels each node may take: finite unary, and finite compute where it is capped.
    allowed = []
    for v in range(n):
        ok = [math.isfinite(problem.unary[v][lab]) for lab in range(k)]
        if v >= problem.n_inputs:
            for lab in seconds_capped:
                if not math.isfinite(side.compute_s[v][lab]):
                    ok[lab] = False
        if not any(ok):
            return None
        allowed.append(ok)
        lo = ok.index(True)
        hi = k - 1 - ok[::-1].index(True)
        for j in range(1, k):  # label(v) >= j is certain for j <= lo, impossible for j > hi
            if j <= lo:
                prog.lb[prog.y(v, j)] = 1.0
            if j > hi:
                prog.ub[prog.y(v, j)] = 0.0
        for lab in range(lo + 1, hi):  # a forbidden label inside the range: x = 0
            if not ok[lab]:
                coef, const = prog.indicator(v, lab)
                prog.add(coef, const, 0.0, 0.0)
        for j in range(1, k - 1):  # nested
            prog.add({prog.y(v, j + 1): 1.0, prog.y(v, j): -1.0}, 0.0, -INF, 0.0)

    consumers = [sorted(set(c)) for c in problem.consumers()]
    for v, ps in enumerate(problem.preds):  # data flows forward
        for u in set(ps):
            for j in range(1, k):
                prog.add({prog.y(u, j): 1.0, prog.y(v, j): -1.0}, 0.0, -INF, 0.0)

    # The objective, unscaled, as coefficients on y and z plus a constant.
    obj: dict[int, float] = {}
    obj_const = problem.constant
    for v in range(n):
        coef, const = prog.per_label(v, _fill(list(problem.unary[v]), allowed[v]))
        _accumulate(obj, coef)
        obj_const += const

    capped_boundaries = {b for b, _ in side.max_bytes}
    z: dict[tuple[int, int], int] = {}
    for u in range(n):
        if not consumers[u]:
            continue
        for i in range(1, k):
            c = problem.per_byte[i] * problem.out_bytes[u]
            b = problem.out_bytes[u]
            if not c and not (i in capped_boundaries and b) and not (all_crossings and b):
                continue
            col = prog.new_var(0.0, 1.0)
            z[u, i] = col
            if c:
                obj[col] = obj.get(col, 0.0) + c
            for v in consumers[u]:
                prog.add({col: 1.0, prog.y(v, i): -1.0, prog.y(u, i): 1.0}, 0.0, 0.0, INF)
            if c < 0 or b < 0 or (side.max_share and c):
                prog.add({col: 1.0, prog.y(u, i): 1.0}, 0.0, -INF, 1.0)
                upper = {col: 1.0}
                for v in consumers[u]:
                    upper[prog.y(v, i)] = upper.get(prog.y(v, i), 0.0) - 1.0
                prog.add(upper, 0.0, -INF, 0.0)

    # Side constraints, each with the same slack side_violations grants.
    for boundary, cap in side.max_bytes:
        coef = {z[u, i]: problem.out_bytes[u] for (u, i) in z if i == boundary}
        prog.add(coef, 0.0, -INF, cap * (1 + SLACK), ROW_SLACK)

    built = _Built(prog, obj, obj_const, allowed, z)

    def seconds(label: int) -> tuple[dict[int, float], float]:
        return built.seconds(problem, side, label)

    for label, cap in side.max_seconds:
        coef, const = seconds(label)
        prog.add(coef, const, -INF, cap * (1 + SLACK), ROW_SLACK)
    for label, share in side.max_share:
        coef, const = seconds(label)
        f = share * (1 + SLACK)
        _accumulate(coef, obj, -f)
        prog.add(coef, const - f * obj_const, -INF, 0.0, ROW_SLACK)
    for label, cap in side.max_memory:  # as memory_use counts it
        coef: dict[int, float] = {}
        const = 0.0
        for v in range(n):
            size = side.param_bytes[v] + problem.out_bytes[v]
            if allowed[v][label] and size:
                c, k0 = prog.indicator(v, label)
                _accumulate(coef, c, size)
                const += k0 * size
        if label > 0:  # r[u] >= x[v][label] - y[u][label]: u is received from below
            for u in range(n):
                size = problem.out_bytes[u]
                readers = [v for v in consumers[u] if allowed[v][label]]
                if not size or not readers:
                    continue
                r = prog.new_var(0.0, 1.0)
                for v in readers:
                    c, k0 = prog.indicator(v, label)
                    row = {r: 1.0, prog.y(u, label): 1.0}
                    _accumulate(row, c, -1.0)
                    prog.add(row, -k0, 0.0, INF)
                coef[r] = size
        prog.add(coef, const, -INF, cap * (1 + SLACK), ROW_SLACK)
    for label in side.min_nodes:
        coef = {}
        const = 0.0
        for v in range(problem.n_inputs, n):
            if allowed[v][label]:
                c, k0 = prog.indicator(v, label)
                _accumulate(coef, c)
                const += k0
        prog.add(coef, const, 1.0, INF)
    return None if prog.infeasible else built



def solve(problem: Problem, side: Side) -> tuple[float, tuple[int, ...]]:
    """(best objective, labels) honouring every side constraint; (inf, ()) when none does."""
    trivial = _trivial(problem, side, lambda labels: evaluate(problem, labels))
    if trivial is not None:
        return trivial
    built = _build(problem, side)
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
    built = _build(problem, side, all_crossings=True)
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
                _accumulate(coef, {prog.y(u, i): side.back_per_byte[i] * problem.out_bytes[u]})
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


def _optimise(problem: Problem, side: Side, prog: _Program, cvec, integrality, bounds,
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


def _run(prog: _Program, cvec, integrality, bounds, options: dict, fallbacks: bool):
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
        with warnings.catch_warnings(), _quiet_stdout():
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


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS 1.12 printf()s a debug line ("HighsMipSolverData::transformNewIntegerFeasible
    Solution tmpSolver.run();") on some solves, straight to file descriptor 1, where it would
    land in the middle of ``tiercut plan --json``. Point descriptor 1 at the null device
    while HiGHS runs, flushing C's buffer before it is put back."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield  # no descriptor 1 to guard
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to reach this way (Windows)
        return None


def _flush_c_stdout() -> None:
    libc = _libc()
    if libc is not None:
        libc.fflush(None)


def _check_indices(problem: Problem, side: Side) -> None:
    k = problem.labels
    for boundary, _ in side.max_bytes:
        if not 0 <= boundary < k:
            raise ValueError(f"max_bytes names boundary {boundary}; the route has 1..{k - 1}")
    for label in [*(lab for lab, _ in side.max_seconds), *(lab for lab, _ in side.max_share),
                  *(lab for lab, _ in side.max_memory), *side.min_nodes]:
        if not 0 <= label < k:
            raise ValueError(f"side constraint names label {label}; the route has 0..{k - 1}")

