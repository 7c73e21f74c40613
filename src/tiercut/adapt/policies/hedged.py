"""``hedged``: adaptive, and while the link is uncertain a request is both sent and run to the
end on the device (the first answer wins); a remote plan the link is sure of is backed up by
the device once its answer is late against the plan's prediction.

A remote plan is raced from the start when the link may be slower than the plan's break-even
rate (where the device alone would have been faster): it was, within the last
``hedge_window_s``, or the rate belief (``uncertainty.RateBelief``: no history at a cold start,
stale history, the spread of recent samples) puts ``UNSURE_QUANTILE`` of its weight below that
rate. Otherwise it carries a backup: the device's run starts ``BACKUP_AFTER`` times the plan's
predicted time away after the device's own part ends (1: when the answer is due), and not at
all if the answer comes first, so a link that fails as no sample foretold (a fade, an outage
right after a fast sample) costs about the prediction plus the all-device time, not the
outage. Instead of keeping a request on the device, the plan for the best rate seen in the
window is sent, raced, once that rate beats the device: one kept on the device through the end
of a dip gets the link back. The price is device energy and link traffic while both run
(redundant requests), so a remote plan is raced only while the device has time to spare
(``HEDGE_BUSY``). ``hedge_after`` > 0 starts a race's device run only once the answer is that
fraction of the plan's predicted latency late.

``unsure_quantile=None, backup_after=None`` is the policy as it was before the belief: it
races only once a slow rate was seen and never backs up (kept to compare against)."""
from __future__ import annotations

import math

from ...planner.plan import Plan
from ...planner.table import DecisionTable, Entry
from ..estimators import BandwidthEstimator, Observation, RateRange
from ..uncertainty import RateBelief, check_quantile
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
# race when the belief puts this much of its weight below the plan's break-even rate (a cold
# start's prior, a factor of 10 either way 9 times out of 10, always does)
UNSURE_QUANTILE = 0.3
# a backup's device run starts this many times the plan's predicted time away (its latency
# less the device's own part) after that part ends: 1, when the answer is due
BACKUP_AFTER = 1.0


class HedgedPolicy(AdaptivePolicy):
    """The adaptive policy's plans, hedged with the device while the link is uncertain.

    ``local_s``: the all-device latency. A plan of latency base + bits/rate is slower than the
    device alone below the rate bits / (local_s - base), its break-even rate. A hedged request
    runs its plan and, from where the device's own part ends, the rest of the model on the
    device too; the first answer wins (the device's answer comes at about ``local_s``, so a
    raced plan is never much slower than the device alone). Within ``window_s``
    (``RateRange``):

    * the estimate says send: race when the link fell below the plan's break-even rate, or the
      belief's ``unsure_quantile`` is below it; otherwise back it up (``backup_after``);
    * the estimate says keep it on the device: when a transfer reached a rate at which the
      table's plan beats the device, send that plan, raced (the device computes as it would
      have, and a link that has come back answers sooner).

    A race in the first case also needs a device with time to spare: the plan's predicted
    latency below ``HEDGE_BUSY`` × the mean time between arrivals (a busier device gets the
    backup instead, which runs only for a late answer).

    ``after``: in the first case a race's device run starts once the answer is ``after`` ×
    the plan's predicted latency (at the estimate) overdue (``Policy.hedge_after_s``); in the
    second it starts at once, as the device would have computed anyway."""

    name = "hedged"

    def __init__(self, table: DecisionTable, initial_bps: float, local_s: float,
                 estimator: BandwidthEstimator | None = None,
                 probe_every_s: float = PROBE_EVERY_S, window_s: float = HEDGE_WINDOW_S,
                 after: float = HEDGE_AFTER, belief: RateBelief | None = None,
                 unsure_quantile: float | None = UNSURE_QUANTILE,
                 backup_after: float | None = BACKUP_AFTER):
        super().__init__(table, initial_bps, estimator, probe_every_s)
        self.range = RateRange(window_s)
        self.after = _check_after(after)
        self.unsure = None if unsure_quantile is None else check_quantile(unsure_quantile)
        self.backup_after = None if backup_after is None else _check_after(backup_after)
        self.belief = None if self.unsure is None else belief or RateBelief(initial_bps)
        self._last, self._gap = None, None  # the last arrival; mean time between arrivals
        self._costed, self._expected = None, 0.0  # (plan, estimate) -> its predicted latency
        self.break_even = {id(e.plan): break_even_bps(e, local_s) for e in table.entries}
        self.entries = {id(e.plan): e for e in table.entries}
        # the device's own part of each plan (its first tier's compute): a backup's wait runs
        # from where that ends
        self._device_s = {id(e.plan): next(iter(e.plan.tier_seconds.values()), 0.0)
                          for e in table.entries}

    def observe(self, obs: Observation) -> None:
        super().observe(obs)
        self.range.observe(obs)
        if self.belief is not None:
            self.belief.observe(obs)

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
            if spare and (self.range.lowest(now) < rate or (  # (the belief asked only then)
                    self.belief is not None and self.belief.quantile_bps(now, self.unsure) < rate)):
                self.hedge, self.hedge_after_s = True, self.after * expected
            elif self.backup_after is not None:
                self.hedge = True
                self.hedge_after_s = self.backup_after * max(
                    expected - self._device_s[id(p)], 0.0)
            else:
                self.hedge = False
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
