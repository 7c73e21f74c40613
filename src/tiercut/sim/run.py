"""Glue for running several policies on one scenario and trace: one decision table, one
simulator, shared plan costs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..adapt.policies import (HEDGE_AFTER, HEDGE_WINDOW_S, PROBE_EVERY_S, WINDOW, Setting,
                              build_policy)
from ..link.traces import BandwidthTrace, TraceFileError, _bad, _read_pensieve
from ..planner.build import Constraints
from ..planner.scenario import Scenario
from ..planner.table import DecisionTable, build_table
from .simulator import Arrivals, RunResult, SimError, Simulator

STATIC_WARMUP_S = 5.0  # the static plan is chosen for the mean rate over the first seconds
LOAD_RANGE = (1.0, 8.0)  # the load axis of the load-aware table
TABLE_MARGIN = 100.0  # the decision table reaches this far below the trace's slowest rate


@dataclass
class Setup:
    simulator: Simulator
    setting: Setting


def read_load_trace(path: str | Path) -> BandwidthTrace:
    """'<seconds> <load factor>' per line (load factor > 0; 1 = idle)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise TraceFileError(f"cannot read load trace {path}: {exc.strerror or exc}") from None
    times, mbit = _read_pensieve(path, lines)
    if not times:
        raise TraceFileError(f"{path}: the load trace is empty; give '<seconds> <load>' lines")
    factors = [m / 1e6 for m in mbit]
    for i, f in enumerate(factors):
        if not f > 0:
            lineno = [n for n, ln in enumerate(lines, 1) if ln.split()][i]
            raise _bad(path, lineno, f"load factor {f!r} must be > 0")
    return BandwidthTrace.from_samples(times, factors, name=path.name)


def prepare(scenario: Scenario, trace: BandwidthTrace, load: BandwidthTrace | None = None,
            load_tier: str | None = None, fps: float = 10.0, V: float = 1.0,
            names: Sequence[str] = (), probe_every_s: float = PROBE_EVERY_S,
            window: int = WINDOW, hedge_window_s: float = HEDGE_WINDOW_S,
            hedge_after: float = HEDGE_AFTER, constraints: Constraints = Constraints()) -> Setup:
    """``constraints`` bind every plan a policy may choose: both tables are built with them."""
    if not probe_every_s > 0:
        raise SimError(f"probe interval {probe_every_s!r} must be > 0 seconds (inf: never probe)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise SimError(f"estimator window {window!r} must be a whole number of transfers >= 1")
    if not hedge_window_s > 0:
        raise SimError(f"hedge window {hedge_window_s!r} must be > 0 seconds (inf: remember "
                       "every slow spell)")
    if not 0 <= hedge_after < math.inf:
        raise SimError(f"hedge delay {hedge_after!r} must be >= 0 (a fraction of the plan's "
                       "predicted latency; 0: race from the start)")
    sim = Simulator(scenario, trace, load, load_tier)
    positive = [r for r in trace.rates_bps if r > 0]
    if not positive:
        raise SimError(f"trace {trace.name!r} carries nothing: every rate is 0")
    # the table must cover what the estimators may say, not only the trace's own rates: a
    # stalled transfer or a slow probe reads far below the slowest sample
    low, high = min(positive) / TABLE_MARGIN, max(positive) * 2
    table = build_table(scenario, constraints, low_bps=low, high_bps=high)
    load_table: DecisionTable | None = None
    if load_tier is not None and (not names or "loadaware" in names):
        hi = max(LOAD_RANGE[1], max(load.rates_bps) if load is not None else 1.0)
        load_table = build_table(scenario, constraints, low_bps=low, high_bps=high,
                                 load_tier=load_tier, load_range=(LOAD_RANGE[0], hi))
    initial = sim.timeline.mean_between(0.0, min(STATIC_WARMUP_S, trace.duration_s))
    if not initial > 0:
        initial = trace.mean_bps
    setting = Setting(scenario, table, initial, load_table, sim.timeline, fps, V, sim.costs,
                      probe_every_s=probe_every_s, window=window,
                      hedge_window_s=hedge_window_s, hedge_after=hedge_after,
                      constraints=constraints)
    return Setup(sim, setting)


def run_policies(setup: Setup, names: Sequence[str], arrivals: Arrivals, duration_s: float,
                 seed: int = 0, deadline_s: float | None = None) -> list[RunResult]:
    times = arrivals.times(duration_s, seed)
    return [setup.simulator.run(build_policy(n, setup.setting), times, duration_s, seed,
                                deadline_s) for n in names]

