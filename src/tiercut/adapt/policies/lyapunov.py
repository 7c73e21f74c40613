"""``lyapunov``: drift-plus-penalty (CutEdge): per request, choose among the table's plans, a
device speed setting and a sending rate the option minimising V·energy + Q·device time, Q the
device's backlog in seconds. Larger V: less energy, longer queues (the energy model is in
``base``)."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

from ...planner.plan import Plan
from ...planner.scenario import Scenario
from ..costs import Costs, device_powers
from ..estimators import BandwidthEstimator, Observation
from .base import PROBE_EVERY_S, Policy, PolicyError, _check_probe


@dataclass
class _Option:
    plan: Plan
    speed: float
    fraction: float


class LyapunovPolicy(Policy):
    name = "lyapunov"
    observes = True

    def __init__(self, scenario: Scenario, candidates: Sequence[Plan], V: float,
                 initial_bps: float, speeds: Sequence[float] = (0.4, 0.7, 1.0),
                 fractions: Sequence[float] = (0.25, 0.5, 1.0), costs: Costs | None = None,
                 probe_every_s: float = PROBE_EVERY_S,
                 estimator: BandwidthEstimator | None = None):
        if not (math.isfinite(V) and V >= 0):
            raise PolicyError(f"V must be a finite number >= 0, got {V!r}")
        for x in (*speeds, *fractions):
            if not 0 < x <= 1:
                raise PolicyError(f"speed settings and sending fractions must be in (0, 1], got {x!r}")
        self.V, self.speeds, self.fractions = V, tuple(speeds), tuple(fractions)
        self.costs = costs or Costs(scenario)
        self.candidates = [self.costs(p) for p in candidates]
        self.power_c, self.power_r = device_powers(scenario)
        self.bandwidth = estimator or BandwidthEstimator(initial_bps)
        self.probe_every_s = _check_probe(probe_every_s)
        self._grid = self._option_grid()
        self._at = None
        self._lines: list[tuple[float, float, _Option]] = []
        self._breaks: list[float] = []

    def observe(self, obs: Observation) -> None:
        self.bandwidth.observe(obs)

    def _option_grid(self) -> list[tuple[_Option, float, float, float, float, float]]:
        """Every plan × speed × sending fraction with the parts of its energy and device time
        that do not depend on the bandwidth: (option, P_c·s·f², P_r·r·bits, s/f, bits, r), s
        the plan's device compute at speed 1. The envelope is redrawn whenever the bandwidth
        estimate moves, so this is done once."""
        grid = []
        for c in self.candidates:
            for f in self.speeds:
                for r in self.fractions:
                    if c.device_bits == 0 and r != 1.0:
                        continue
                    grid.append((_Option(c.plan, f, r), self.power_c * c.device_s * f * f,
                                 self.power_r * r * c.device_bits, c.device_s / f,
                                 c.device_bits, r))
        return grid

    def options(self, bw: float) -> list[tuple[float, float, _Option]]:
        """(energy J, device seconds, option) for every plan × speed × sending fraction:
        energy P_c·s·f² + P_r·r·bits/bw, device time s/f + bits/(r·bw)."""
        return [(compute_j + radio / bw, compute_s + bits / (r * bw), o)
                for o, compute_j, radio, compute_s, bits, r in self._grid]

    def _envelope(self, bw: float) -> None:
        """Lower envelope over Q >= 0 of the lines V·energy + Q·busy (convex hull trick)."""
        options = self.options(bw)
        # (-slope, intercept, index): sorted by slope (busy) decreasing, then intercept; the
        # index keeps equal lines in the options' order, as a stable sort by the two would
        lines = sorted([(-b, self.V * e, i) for i, (e, b, _) in enumerate(options)])
        hull: list[tuple[float, float, int]] = []  # (intercept, slope, index), slopes decreasing
        breaks: list[float] = []
        for minus_b, a, i in lines:
            b = -minus_b
            if hull and hull[-1][1] == b:
                continue  # same slope, higher intercept (sorted)
            while hull:
                a0, b0, _ = hull[-1]
                x = (a - a0) / (b0 - b)  # where the new line gets cheaper
                if breaks and x <= breaks[-1]:
                    hull.pop()
                    breaks.pop()
                    continue
                if x <= 0:
                    hull.pop()
                    continue
                breaks.append(x)
                break
            hull.append((a, b, i))
            if len(hull) == 1:
                breaks.clear()
        self._lines, self._breaks = [options[i] for _, _, i in hull], breaks

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        bw = self.bandwidth.estimate_bps
        if bw != self._at:
            self._at = bw
            self._envelope(bw)
        o = self._lines[bisect.bisect_right(self._breaks, backlog_s)][2]
        self.speed, self.send_fraction = o.speed, o.fraction
        return o.plan
