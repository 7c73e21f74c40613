"""``loadaware``: the adaptive policy with the table's load axis and the watched tier's
observed load (LoADPart)."""
from __future__ import annotations

from ...planner.plan import Plan
from ...planner.table import DecisionTable
from ..estimators import BandwidthEstimator, LoadEstimator, Observation
from .adaptive import AdaptivePolicy
from .base import PROBE_EVERY_S, PolicyError


class LoadAwarePolicy(AdaptivePolicy):
    name = "loadaware"

    def __init__(self, table: DecisionTable, initial_bps: float,
                 estimator: BandwidthEstimator | None = None, load: LoadEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S):
        if table.load_tier is None:
            raise PolicyError("the load-aware policy needs a table built with a load_tier")
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.load = load or LoadEstimator()
        self._key = None
        self._raw = None  # (bandwidth, load factor) that gave ``_key``

    def observe(self, obs: Observation) -> None:
        super().observe(obs)
        if obs.load is not None and obs.done:
            self.load.add(obs.load)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw, factor = self.bandwidth.estimate_bps, self.load.factor
        if (bw, factor) == self._raw:  # most requests: neither estimate has moved
            return self._plan
        self._raw = (bw, factor)
        key = (bw, round(factor, 3))
        if key != self._key:
            self._key, self._plan = key, self.table.best(key[0], key[1])
        return self._plan
