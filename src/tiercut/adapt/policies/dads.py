"""``dads``: latency mode while the latency plan sustains the frame rate, else the throughput
plan (DADS light/heavy); when no plan sustains it, ``unreachable`` says so (or, ``strict``,
``FrameRateError`` is raised) instead of a silent miss."""
from __future__ import annotations

import math

from ...planner.build import Constraints
from ...planner.plan import Plan
from ...planner.scenario import Scenario
from ...planner.solve import plan as solve
from ...planner.table import DecisionTable, with_device_bandwidth
from ..costs import CPU, TRACE_LINK, Costs, PlanCost
from ..estimators import BandwidthEstimator
from .adaptive import AdaptivePolicy
from .base import PROBE_EVERY_S, FrameRateError, PolicyError


def stage_periods(c: PlanCost, bandwidth_bps: float) -> float:
    """Seconds per request of the slowest pipeline stage (a compute tier or a link)."""
    worst = 0.0
    for kind, _, seconds, bits, held in c.steps:
        s = seconds if kind == CPU else (bits / bandwidth_bps if kind == TRACE_LINK else held)
        worst = max(worst, s)
    return worst


class DadsPolicy(AdaptivePolicy):
    name = "dads"

    def __init__(self, scenario: Scenario, table: DecisionTable, fps: float, initial_bps: float,
                 strict: bool = False, costs: Costs | None = None,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S,
                 constraints: Constraints = Constraints()):
        if not (math.isfinite(fps) and fps > 0):
            raise PolicyError(f"frame rate must be > 0 per second, got {fps!r}")
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.scenario, self.fps, self.strict = scenario, fps, strict
        self.constraints = constraints  # the table's: its heavy plans must honour them too
        self.costs = costs or Costs(scenario)
        self._heavy: dict[int, Plan] = {}
        self.mode = "light"

    def heavy(self, bw: float) -> Plan:
        bucket = round(math.log(bw) / math.log(1.05))  # plans cached per 5% of bandwidth
        if bucket not in self._heavy:
            self._heavy[bucket] = solve(with_device_bandwidth(self.scenario, 1.05 ** bucket),
                                        "throughput", self.constraints)
        return self._heavy[bucket]

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw == self._at:
            return self._plan
        self._at = bw
        light = self.table.best(bw)
        period = 1.0 / self.fps
        if stage_periods(self.costs(light), bw) <= period:
            self.mode, self._plan, self.unreachable = "light", light, ""
            return light
        heavy = self.heavy(bw)
        self.mode, self._plan = "heavy", heavy
        best = stage_periods(self.costs(heavy), bw)
        if best > period * (1 + 1e-9):
            self.unreachable = (f"{self.fps:g} frames/s cannot be sustained at {bw / 1e6:.3g} "
                                f"Mbit/s: the best pipeline manages {1 / best:.3g} frames/s")
            if self.strict:
                raise FrameRateError(self.unreachable)
        else:
            self.unreachable = ""
        return heavy
