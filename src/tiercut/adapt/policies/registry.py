"""The policies by name: what building one may need (``Setting``), ``build_policy`` and
``parse_policies`` for the names users type."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...planner.build import Constraints
from ...planner.plan import Plan
from ...planner.scenario import Scenario
from ...planner.table import DecisionTable
from ..costs import Costs
from ..estimators import BandwidthEstimator
from .adaptive import AdaptivePolicy
from .base import PROBE_EVERY_S, WINDOW, Policy, PolicyError
from .dads import DadsPolicy
from .hedged import HEDGE_AFTER, HEDGE_WINDOW_S, HedgedPolicy
from .loadaware import LoadAwarePolicy
from .lyapunov import LyapunovPolicy
from .oracle import OraclePolicy
from .robust import RobustPolicy
from .static import StaticPolicy

POLICIES = ("static", "adaptive", "hedged", "robust", "loadaware", "dads", "lyapunov", "oracle")


@dataclass
class Setting:
    """What building a policy by name may need."""

    scenario: Scenario
    table: DecisionTable
    initial_bps: float
    load_table: DecisionTable | None = None
    timeline: object = None  # sim.timeline.Timeline of the device link (the oracle)
    fps: float = 10.0
    V: float = 1.0
    costs: Costs | None = None
    probe_every_s: float = PROBE_EVERY_S  # idle probes of the policies that estimate bandwidth
    window: int = WINDOW  # transfers the bandwidth estimator keeps
    hedge_window_s: float = HEDGE_WINDOW_S  # the hedged policy's memory of the link's range
    hedge_after: float = HEDGE_AFTER  # its wait before the device runs, in predicted latencies
    # what every plan must honour (a private input...): the tables were built with them, and
    # a policy that solves afresh (dads) passes them on
    constraints: Constraints = field(default_factory=Constraints)
    # the robust policy's score: its expectation over the rate belief (None) or this quantile
    quantile: float | None = None


def candidates(table: DecisionTable) -> list[Plan]:
    return [e.plan for e in table.entries]


def build_policy(name: str, s: Setting) -> Policy:
    costs = s.costs or Costs(s.scenario)

    def estimator() -> BandwidthEstimator:
        return BandwidthEstimator(s.initial_bps, window=s.window)

    if name == "static":
        return StaticPolicy(s.table.best(s.initial_bps))
    if name == "adaptive":
        return AdaptivePolicy(s.table, s.initial_bps, estimator(), s.probe_every_s)
    if name == "hedged":
        return HedgedPolicy(s.table, s.initial_bps, costs.device_alone_s(), estimator(),
                            s.probe_every_s, s.hedge_window_s, s.hedge_after)
    if name == "robust":
        return RobustPolicy(s.table, s.scenario, s.initial_bps, costs,
                            probe_every_s=s.probe_every_s, quantile=s.quantile)
    if name == "loadaware":
        if s.load_table is None:
            raise PolicyError("the load-aware policy needs a load table (build one with a "
                              "load_tier and a load range)")
        return LoadAwarePolicy(s.load_table, s.initial_bps, estimator(),
                               probe_every_s=s.probe_every_s)
    if name == "dads":
        return DadsPolicy(s.scenario, s.table, s.fps, s.initial_bps, costs=costs,
                          estimator=estimator(), probe_every_s=s.probe_every_s,
                          constraints=s.constraints)
    if name == "lyapunov":
        return LyapunovPolicy(s.scenario, candidates(s.table), s.V, s.initial_bps, costs=costs,
                              probe_every_s=s.probe_every_s, estimator=estimator())
    if name == "oracle":
        if s.timeline is None:
            raise PolicyError("the oracle needs the trace it is to know")
        return OraclePolicy(candidates(s.table), s.timeline, costs)
    raise PolicyError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")


def parse_policies(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PolicyError(f"no policy given; policies are {', '.join(POLICIES)}")
    for n in names:
        if n not in POLICIES:
            raise PolicyError(f"unknown policy {n!r}; policies are {', '.join(POLICIES)}")
    return names
