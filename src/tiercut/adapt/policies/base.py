"""What every re-partitioning policy is: one interface, ``observe(observation)`` after each
request, ``next_plan(now, backlog_s)`` before the next one; the policies' errors; and the
defaults and checks that several policies share.

Device energy model for speed f and sending fraction r (both in (0, 1]): compute at f takes
time/f at power P_c·f³ (dynamic power), so energy P_c·time·f²; sending at r of the link's rate
takes bits/(r·rate) at radio power P_r·r² (a convex rate-power curve), so energy P_r·r·bits/rate.
f = r = 1 is the planner's energy model.

Idle probes: a request whose plan keeps everything on the device sends nothing over the link,
so it tells the bandwidth estimator nothing. Policies that estimate bandwidth ask for a small
probe once no transfer has been seen for ``probe_every_s`` (``next_probe``); the runtime's
``AdaptiveClient.idle`` and the simulator send them and feed the result back through
``observe`` like any transfer.
"""
from __future__ import annotations

import math

from ...errors import TiercutError
from ...planner.plan import Plan
from ..estimators import Observation

PROBE_EVERY_S = 1.0  # an idle link is probed this often (seconds without a transfer)
WINDOW = 5  # transfers the bandwidth estimator keeps (see estimators.BandwidthEstimator)


class PolicyError(TiercutError, ValueError):
    """An unknown policy name or settings a policy cannot work with."""


class FrameRateError(TiercutError, RuntimeError):
    """No plan sustains the requested frame rate at the current bandwidth."""


class Policy:
    name = "policy"
    observes = False  # whether observe() does anything (the simulator skips building them)
    speed = 1.0  # device speed setting for the next request
    send_fraction = 1.0  # fraction of the link's rate to send at
    unreachable = ""  # why the policy's goal cannot be met, when it cannot
    probe_every_s = math.inf  # idle probes: after this long without a transfer (inf: never)
    hedge = False  # run the next request to the end on the device too (the first answer wins)
    hedge_after_s = 0.0  # ... starting that run once the request has been away this long

    def observe(self, obs: Observation) -> None:
        pass

    def next_probe(self) -> float:
        """When (policy clock) the next idle probe is due; ``math.inf``: never."""
        return self.bandwidth.last_t + self.probe_every_s if math.isfinite(
            self.probe_every_s) else math.inf

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        raise NotImplementedError


def _check_probe(every_s: float) -> float:
    if not every_s > 0:
        raise PolicyError(f"probe interval must be > 0 s (math.inf: never), got {every_s!r}")
    return every_s
