"""The integer program's rows: a MILP over label indicators, built apart from its solving.

Variables (HiGHS through ``scipy.optimize.milp``, see ``milp``):

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

``build_program`` turns a Problem and its Side into these rows, less the objective's, which
it returns as coefficients for the solver to scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .problem import INF, Problem, Side

SLACK = 1e-12  # the relative slack side_violations grants every cap
ROW_SLACK = 1e-9  # extra room on each scaled side row, above HiGHS's rounding


class Program:
    """Rows of a MILP over y (and z), built as sparse linear expressions."""

    def __init__(self, n: int, k: int) -> None:
        self.n, self.k = n, k
        self.n_y = n * (k - 1)
        self.n_vars = self.n_y
        self.lb: list[float] = [0.0] * self.n_y
        self.ub: list[float] = [1.0] * self.n_y
        self.rows: list[tuple[dict[int, float], float, float]] = []
        self.infeasible = False

    def copy(self) -> "Program":
        """A copy whose new rows (cuts) leave this program as it is."""
        other = Program(self.n, self.k)
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


def accumulate(into: dict[int, float], coef: dict[int, float], factor: float = 1.0) -> None:
    """into += factor · coef, column by column."""
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
class Built:
    """A program with every row but the objective's, and the objective as coefficients."""

    prog: Program
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
                accumulate(coef, c, side.compute_s[v][label])
                const += k0 * side.compute_s[v][label]
        return coef, const


def build_program(problem: Problem, side: Side, all_crossings: bool = False) -> Built | None:
    """Every row but the objective's; None when the program is plainly infeasible.
    ``all_crossings``: a z column for every tensor that can cross, not only for those the
    objective or a byte cap prices."""
    n, k = len(problem.names), problem.labels
    prog = Program(n, k)
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
        accumulate(obj, coef)
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

    built = Built(prog, obj, obj_const, allowed, z)

    def seconds(label: int) -> tuple[dict[int, float], float]:
        return built.seconds(problem, side, label)

    for label, cap in side.max_seconds:
        coef, const = seconds(label)
        prog.add(coef, const, -INF, cap * (1 + SLACK), ROW_SLACK)
    for label, share in side.max_share:
        coef, const = seconds(label)
        f = share * (1 + SLACK)
        accumulate(coef, obj, -f)
        prog.add(coef, const - f * obj_const, -INF, 0.0, ROW_SLACK)
    for label, cap in side.max_memory:  # as memory_use counts it
        coef: dict[int, float] = {}
        const = 0.0
        for v in range(n):
            size = side.param_bytes[v] + problem.out_bytes[v]
            if allowed[v][label] and size:
                c, k0 = prog.indicator(v, label)
                accumulate(coef, c, size)
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
                    accumulate(row, c, -1.0)
                    prog.add(row, -k0, 0.0, INF)
                coef[r] = size
        prog.add(coef, const, -INF, cap * (1 + SLACK), ROW_SLACK)
    for label in side.min_nodes:
        coef = {}
        const = 0.0
        for v in range(problem.n_inputs, n):
            if allowed[v][label]:
                c, k0 = prog.indicator(v, label)
                accumulate(coef, c)
                const += k0
        prog.add(coef, const, 1.0, INF)
    return None if prog.infeasible else built
