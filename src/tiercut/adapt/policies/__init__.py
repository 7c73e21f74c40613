"""Re-partitioning policies, one per file behind the one interface in ``base`` (``observe``
after each request, ``next_plan`` before the next one); ``registry`` builds them by name.

* ``static``: the best plan at start, never changed.
* ``adaptive``: the decision table's plan for the current bandwidth estimate.
* ``hedged``: adaptive, and while the link is uncertain a request also runs on the device.
* ``robust``: the plan (plain, raced or backed up by the device) of least expected cost over
  a rate belief with its uncertainty (``adapt.uncertainty``).
* ``loadaware``: adaptive over the table's load axis too.
* ``dads``: the latency plan while it sustains the frame rate, else the throughput plan.
* ``lyapunov``: drift-plus-penalty over plans, device speeds and sending rates.
* ``oracle``: knows the future trace.
"""
from .adaptive import AdaptivePolicy
from .base import PROBE_EVERY_S, WINDOW, FrameRateError, Policy, PolicyError
from .dads import DadsPolicy, stage_periods
from .hedged import (ARRIVAL_ALPHA, HEDGE_AFTER, HEDGE_BUSY, HEDGE_WINDOW_S, HedgedPolicy,
                     break_even_bps)
from .loadaware import LoadAwarePolicy
from .lyapunov import LyapunovPolicy
from .oracle import OraclePolicy
from .robust import RobustPolicy
from .registry import POLICIES, Setting, build_policy, candidates, parse_policies
from .static import StaticPolicy

__all__ = ["ARRIVAL_ALPHA", "HEDGE_AFTER", "HEDGE_BUSY", "HEDGE_WINDOW_S", "POLICIES",
           "PROBE_EVERY_S", "WINDOW", "AdaptivePolicy", "DadsPolicy", "FrameRateError",
           "HedgedPolicy", "LoadAwarePolicy", "LyapunovPolicy", "OraclePolicy", "Policy",
           "PolicyError", "RobustPolicy", "Setting", "StaticPolicy", "break_even_bps", "build_policy",
           "candidates", "parse_policies", "stage_periods"]
