"""The joint cut and codec across a range of the device link's bandwidth: where each plan wins.

A decision table (``table.py``) is exact for the scenario's own codecs because, with the
labels fixed, a plan's latency is affine in 1/bandwidth. With calibrated codecs the candidate
set changes with the codec as well, so this sweep solves the joint problem
(``compress.plan_with_codecs``) on a geometric grid of bandwidths and, wherever two grid
points pick different plans, bisects (in log bandwidth) to the rate where the choice changes.
A regime narrower than the grid's step can be missed; the grid's size is the caller's
(``points``), and the boundaries found are within ``tolerance`` (relative) of the true ones.

Beside the joint plan, the sweep evaluates the two baselines a split has to beat: the whole
model on the device, and the input sent to the last tier with its best admissible calibrated
input codec (``input_to_top``: a JPEG for an image model; raw where none is admissible).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..codecs.calibrate import CodecTable
from .build import Constraints
from .compress import JointPlan, plan_with_codecs
from .scenario import Scenario, ScenarioError
from .solve import baseline
from .table import with_device_bandwidth


@dataclass(frozen=True)
class Regime:
    """From ``from_bps`` up to the next regime's start, ``plan`` is the joint optimum."""

    from_bps: float
    plan: JointPlan


@dataclass(frozen=True)
class CodecSweep:
    regimes: tuple[Regime, ...]
    grid: tuple[float, ...]  # bandwidths, bit/s, ascending
    joint_s: tuple[float, ...]  # the joint plan's predicted latency at each grid point
    baselines: dict[str, tuple[float, ...]]  # name -> predicted latency at each grid point


def input_to_top(scenario: Scenario, table: CodecTable, max_loss: float, z: float = 0.0
                 ) -> JointPlan:
    """Everything on the last tier, the input sent with the best codec the table admits at
    cut 0 (raw where none is). It ignores a private input: it is the plan privacy rules out."""
    top = scenario.tiers[-1]
    names = [n.name for n in scenario.hosts[0].profile.nodes]
    off = tuple((v, t) for v in names for t in scenario.tiers if t != top)
    inputs_only = dataclasses.replace(table, cuts=tuple(c for c in table.cuts if c.position == 0))
    return plan_with_codecs(scenario, inputs_only, max_loss, "latency", Constraints(forbid=off),
                            z=z)


def _key(jp: JointPlan) -> tuple:
    p = jp.plan
    return p.route, tuple(sorted(p.assignment.items())), tuple(h.codec for h in p.hops)


def sweep_with_codecs(scenario: Scenario, table: CodecTable, max_loss: float, low_bps: float,
                      high_bps: float, constraints: Constraints = Constraints(), z: float = 0.0,
                      points: int = 48, tolerance: float = 1e-3) -> CodecSweep:
    """The joint plan's regimes over ``low_bps..high_bps`` of the device's link (bit/s)."""
    if not (0 < low_bps < high_bps and math.isfinite(high_bps)):
        raise ScenarioError(f"bandwidth range must satisfy 0 < low < high, got "
                            f"{low_bps}..{high_bps}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ScenarioError(f"a sweep needs points >= 2 (an int), got {points!r}")

    def at(bps: float) -> JointPlan:
        return plan_with_codecs(with_device_bandwidth(scenario, bps), table, max_loss,
                                "latency", constraints, z=z)

    ratio = (high_bps / low_bps) ** (1.0 / (points - 1))
    grid = [low_bps * ratio**i for i in range(points - 1)] + [high_bps]
    plans = [at(b) for b in grid]
    starts: list[Regime] = [Regime(grid[0], plans[0])]

    def refine(lo: float, p_lo: JointPlan, hi: float, p_hi: JointPlan) -> None:
        """Regime starts in (lo, hi], where p_lo and p_hi are the optima at the two ends."""
        if _key(p_lo) == _key(p_hi):
            return
        if hi / lo <= 1.0 + tolerance:
            starts.append(Regime(hi, p_hi))
            return
        mid = math.sqrt(lo * hi)
        p_mid = at(mid)
        refine(lo, p_lo, mid, p_mid)
        refine(mid, p_mid, hi, p_hi)

    for i in range(1, points):
        refine(grid[i - 1], plans[i - 1], grid[i], plans[i])
    regimes = [r for i, r in enumerate(starts)
               if i == 0 or _key(r.plan) != _key(starts[i - 1].plan)]
    first, top = scenario.tiers[0], scenario.tiers[-1]
    at_grid = [with_device_bandwidth(scenario, b) for b in grid]
    bases = {f"all-{first}": tuple(baseline(s, first).total_s for s in at_grid),
             f"input to {top}": tuple(input_to_top(s, table, max_loss, z).plan.total_s
                                      for s in at_grid)}
    return CodecSweep(tuple(regimes), tuple(grid), tuple(jp.plan.total_s for jp in plans), bases)


__all__ = ["CodecSweep", "Regime", "input_to_top", "sweep_with_codecs"]
