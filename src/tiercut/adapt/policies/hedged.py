"""``hedged``: adaptive, and while the link is uncertain a request is both sent and run to the
end on the device (the first answer wins): a remote plan once the link was, within the last
``hedge_window_s``, slower than the plan's break-even rate (where the device alone would have
been faster); and instead of keeping a request on the device, the plan for the best rate seen
in that window, once that rate beats the device. A request sent into an outage then costs the
all-device time, not the outage's, and one kept on the device through the end of a dip gets
the link back. The price is device energy and link traffic while both run (redundant
requests), so a remote plan is raced only while the device has time to spare
(``HEDGE_BUSY``). ``hedge_after`` > 0 starts the device's run of a remote plan only once the
answer is that fraction of the plan's predicted latency late (a backup request): less energy,
and a stalled request answered that much later."""
from __future__ import annotations

import math

from ...planner.plan import Plan
from ...planner.table import DecisionTable, Entry
from ..estimators import BandwidthEstimator, Observation, RateRange
from .adaptive import AdaptivePolicy
from .base import PROBE_EVERY_S, PolicyError

HEDGE_WINDOW_S = 60.0  # the hedged policy's memory of how slow and how fast the link was
HEDGE_AFTER = 0.0  # the hedged policy's wait before the device's run, in predicted latencies
# The hedged policy races a remote plan only while its predicted latency (about what a race
# holds the device for) is below this fraction of the mean time between arrivals: a device
# kept busier by redundant runs queues the requests that follow (Irish 5G traces, MobileNetV2
# at 5 requests/s: 2.9x the oracle's mean latency racing every time, 1.04x with this rule).
HEDGE_BUSY = 0.5
ARRIVAL_ALPHA = 0.1  # EWMA weight of the newest time between arrivals


class HedgedPolicy(AdaptivePolicy):
    """The adaptive policy's plans, hedged with the device while the link is uncertain.

    ``local_s``: the all-device latency. A plan of latency base + bits/rate is slower than the
    device alone below the rate bits / (local_s - base), its break-even rate. A hedged request
    runs its plan and, from where the device's own part ends, the rest of the model on the
    device too; the first answer wins (the device's answer comes at about ``local_s``, so a
    hedged plan is never much slower than the device alone). Within ``window_s``
    (``RateRange``):

    * the estimate says send: hedge when the link fell below the plan's break-even rate;
    * the estimate says keep it on the device: when a transfer reached a rate at which the
      table's plan beats the device, send that plan, hedged (the device computes as it would
      have, and a link that has come back answers sooner).

    The first case also needs a device with time to spare: the plan's predicted latency below
    ``HEDGE_BUSY`` × the mean time between arrivals. On a steady link neither happens and this
    is the adaptive policy.

    ``after``: in the first case the device's run starts once the answer is ``after`` × the
    plan's predicted latency (at the estimate) overdue (``Policy.hedge_after_s``); in the
    second it starts at once, as the device would have computed anyway."""

    name = "hedged"

    def __init__(self, table: DecisionTable, initial_bps: float, local_s: float,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S, window_s: float = HEDGE_WINDOW_S,
                 after: float = HEDGE_AFTER):
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.range = RateRange(window_s)
        self.after = _check_after(after)
        self._last, self._gap = None, None  # the last arrival; mean time between arrivals
        self._costed, self._expected = None, 0.0  # (plan, estimate) -> its predicted latency
        self.break_even = {id(e.plan): break_even_bps(e, local_s) for e in table.entries}
        self.entries = {id(e.plan): e for e in table.entries}

    def observe(self, obs: Observation) -> None:
        super().observe(obs)
        self.range.observe(obs)

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        p = super().next_plan(now, backlog_s)
        if self._last is not None:
            gap, mean = now - self._last, self._gap
            self._gap = gap if mean is None else mean + ARRIVAL_ALPHA * (gap - mean)
        self._last = now
        rate = self.break_even.get(id(p), 0.0)
        if rate > 0.0:
            bw = self.bandwidth.estimate_bps
            if (p, bw) != self._costed:  # most requests: neither has changed
                self._costed, self._expected = (p, bw), self.entries[id(p)].cost(bw)
            expected = self._expected
            spare = not self._gap or expected < HEDGE_BUSY * self._gap
            self.hedge = spare and self.range.lowest(now) < rate
            self.hedge_after_s = self.after * expected
            return p
        high = self.range.highest(now)
        if high > 0.0:
            q = self.table.best(high)
            if 0.0 < self.break_even.get(id(q), 0.0) < high:
                self.hedge, self.hedge_after_s = True, 0.0
                return q
        self.hedge = False
        return p


def _check_after(after: float) -> float:
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not 0 <= after < math.inf:
        raise PolicyError(f"hedge delay {after!r} must be a number >= 0 (a fraction of the "
                          "plan's predicted latency; 0: race from the start)")
    return float(after)


def break_even_bps(e: Entry, local_s: float) -> float:
    """The device-link rate below which ``e``'s plan is slower than the device alone (0: it
    sends nothing; inf: it is never faster)."""
    if e.per_inv_bw <= 0:
        return 0.0
    return e.per_inv_bw / (local_s - e.base) if local_s > e.base else math.inf
