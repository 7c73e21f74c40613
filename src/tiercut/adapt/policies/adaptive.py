"""``adaptive``: the decision table's plan for the current bandwidth estimate (JALAD, dynamic
split computing); a lookup is a bisection."""
from __future__ import annotations

from ...planner.plan import Plan
from ...planner.table import DecisionTable
from ..estimators import BandwidthEstimator, Observation
from .base import PROBE_EVERY_S, Policy, _check_probe


class AdaptivePolicy(Policy):
    name = "adaptive"
    observes = True

    def __init__(self, table: DecisionTable, initial_bps: float,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S):
        self.table = table
        self.bandwidth = estimator or BandwidthEstimator(initial_bps)
        self.probe_every_s = _check_probe(probe_every_s)
        self._at, self._plan = None, None

    def observe(self, obs: Observation) -> None:
        self.bandwidth.observe(obs)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw != self._at:
            self._at, self._plan = bw, self.table.best(bw)
        return self._plan
