"""The mobility-aware migration rule: predicted gain, a ski-rental guard, and pre-warming.

At each request the user is in cell c and its stage on server s. The rule knows the present
(the latency of this request on every server, which servers are down) and the recent path,
nothing later.

* Prediction: the user's velocity over the last ``history`` steps is extrapolated in a straight
  line for ``horizon_s`` (standing still: it stays). From this request's latencies it learns
  what one, two, ... backhaul hops between cell and stage cost now (f(h), linear beyond the
  hops it sees); the predicted gain of moving the stage to b is the sum over the predicted
  cells d of f(hops(d, s)) - f(hops(d, b)). It migrates to the b with the largest gain less
  the migration's cost (the state's transfer, and a cold start unless b is warm), if positive.
* Ski rental: whatever the prediction, once the extra latency paid since the stage stopped
  being the best reaches the cost of moving it to the best server, it moves (the break-even
  rule of rent-or-buy: never more than twice the cost of the best choice in hindsight, for
  each excursion from the stage's cell).
* Pre-warming: one server besides the stage's is kept warm, so that a move there has no cold
  start: the serving cell's while the stage is elsewhere, else the first other cell on the
  predicted path within ``prewarm_s``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AwareRule:
    history: int = 5
    horizon_s: float = 60.0
    prewarm_s: float = 10.0
    predict: bool = True
    ski: bool = True
    prewarm: bool = True

    def __post_init__(self):
        if isinstance(self.history, bool) or not isinstance(self.history, int) \
                or self.history < 1:
            raise ValueError(f"AwareRule.history={self.history!r}: accepted is an int >= 1")
        for name in ("horizon_s", "prewarm_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"AwareRule.{name}={v!r}: accepted is a finite number >= 0")

    def start(self, world, lat, mig, cold_s, xy, dt) -> "_Aware":
        return _Aware(self, world, lat, mig, cold_s, xy, dt)


class _Aware:
    def __init__(self, rule, world, lat, mig, cold_s, xy, dt):
        self.rule, self.world, self.lat, self.mig, self.cold_s = rule, world, lat, mig, cold_s
        self.xy, self.dt = xy, dt
        self.hops = world.hop_matrix
        self.signal = world.backhaul_s(0.0, self.hops)  # a move to a warm server
        self.serving = world.nearest(xy)
        self.regret = 0.0
        self.k = max(1, int(round(rule.horizon_s / dt)))

    def _predicted_cells(self, t: int) -> np.ndarray:
        h = self.rule.history
        v = (self.xy[t] - self.xy[max(0, t - h)]) / (self.dt * max(1, min(t, h)))
        steps = np.arange(1, self.k + 1)[:, None] * self.dt
        return self.world.nearest(self.xy[t] + steps * v)

    def _per_hop(self, t: int, c: int) -> np.ndarray:
        """f[h]: extra latency now of a stage h hops from the serving cell, h = 0..max."""
        hc, extra = self.hops[c], self.lat[t] - self.lat[t, c]
        top = int(self.hops.max())
        seen = sorted(set(hc.tolist()))
        f_seen = [0.0 if h == 0 else float(np.min(extra[hc == h])) for h in seen]
        if len(seen) == 1:
            return np.zeros(top + 1)
        hs = np.arange(top + 1)
        f = np.interp(hs, seen, f_seen)
        beyond = hs > seen[-1]
        slope = (f_seen[-1] - f_seen[-2]) / (seen[-1] - seen[-2])
        f[beyond] = f_seen[-1] + slope * (hs[beyond] - seen[-1])
        return np.maximum(f, 0.0)

    def step(self, t: int, s: int, warm: set, down: np.ndarray) -> tuple:
        """(server to put the stage on, servers to pre-warm) for request ``t``."""
        c = int(self.serving[t])
        cells = self._predicted_cells(t)
        ahead = np.flatnonzero((cells >= 0) & (cells != c))
        if not self.rule.prewarm:
            pre = set()
        elif c != s:  # the likeliest destination: the serving cell's server
            pre = {c}
        elif ahead.size and ahead[0] < self.rule.prewarm_s / self.dt:
            pre = {int(cells[ahead[0]])}
        else:
            pre = set()
        row = np.where(down, np.inf, self.lat[t])
        best = int(np.argmin(row))
        if best == s or row[s] <= row[best]:
            self.regret = 0.0
            return s, pre
        is_warm = np.array([b in warm for b in range(len(row))])
        cost = np.where(is_warm, self.signal[s], self.mig[s] + self.cold_s)
        cost = np.where(down, np.inf, cost)
        self.regret += row[s] - row[best]
        if self.rule.ski and self.regret >= cost[best]:
            self.regret = 0.0
            return best, pre
        if self.rule.predict:
            f = self._per_hop(t, c)
            inside = cells[cells >= 0]
            future = f[self.hops[inside]].sum(axis=0)  # [S]: predicted extra per stage server
            gain = (row[s] - row) + (future[s] - future)
            net = np.where(down, -np.inf, gain - cost)
            b = int(np.argmax(net))
            if b != s and net[b] > 0:
                self.regret = 0.0
                return b, pre
        return s, pre
