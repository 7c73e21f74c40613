"""Per-cell bandwidth traces: a rate model in which a user in cell s at time t gets trace_s(t).

Each server's cell replays one recorded trace (a :class:`tiercut.link.traces.BandwidthTrace`,
piecewise constant and looping), times ``scale``, started ``offsets_s[s]`` seconds in. With
``distance_scaled=True`` the rate is also multiplied by the radio's rate at the user's distance
over its rate at r/sqrt(2) (the median distance of a point spread evenly over the disc), so
that the cell's centre is better than its edge; without it the trace alone decides (a trace
recorded while moving already holds the distance's variation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiercut.link.traces import BandwidthTrace


@dataclass(frozen=True)
class CellTraces:
    traces: tuple
    scale: float = 1.0
    offsets_s: tuple = ()
    distance_scaled: bool = False

    def __post_init__(self):
        object.__setattr__(self, "traces", tuple(self.traces))
        if not self.traces:
            raise ValueError("CellTraces: traces is empty; give one BandwidthTrace per server")
        for i, tr in enumerate(self.traces):
            if not isinstance(tr, BandwidthTrace):
                raise ValueError(f"CellTraces: traces[{i}] is a {type(tr).__name__}; accepted "
                                 f"is a BandwidthTrace (tiercut.link.traces.load_trace)")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"CellTraces: scale={self.scale!r} must be a finite number > 0")
        offsets = tuple(float(o) for o in self.offsets_s) or (0.0,) * len(self.traces)
        if len(offsets) != len(self.traces) or not all(np.isfinite(o) and o >= 0
                                                       for o in offsets):
            raise ValueError(f"CellTraces: offsets_s={self.offsets_s!r}; give one finite "
                             f"offset >= 0 per trace ({len(self.traces)})")
        object.__setattr__(self, "offsets_s", offsets)

    def __len__(self) -> int:
        return len(self.traces)

    def trace_rates(self, t) -> np.ndarray:
        """[n, S] each cell's trace rate (bit/s, scaled) at times ``t`` [n]."""
        t = np.asarray(t, dtype=float)
        out = np.empty((len(t), len(self.traces)))
        for s, (tr, off) in enumerate(zip(self.traces, self.offsets_s)):
            times = np.asarray(tr.times_s)
            local = (t + off) % tr.duration_s
            k = np.clip(np.searchsorted(times, local, side="right") - 1, 0, len(times) - 1)
            out[:, s] = np.asarray(tr.rates_bps)[k] * self.scale
        return out

    def rates(self, t, distances, radii, radio) -> np.ndarray:
        """[n, S] rate of a user at distances [n, S] from each server at times t [n]."""
        r = self.trace_rates(t)
        if self.distance_scaled:
            ref = radio.rate_bps(np.asarray(radii, dtype=float) / np.sqrt(2.0))
            r = r * radio.rate_bps(distances) / ref[None, :]
        return r
