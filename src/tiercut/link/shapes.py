"""Synthetic bandwidth traces of the shapes that break rate-following adaptation, each a
``BandwidthTrace`` deterministic from its arguments and ``seed``:

* ``cold_start_outage``: a good link for the first seconds (one transfer's worth), then a
  near-outage for ``outage_s``, then back, the good level jittered a little per sample;
* ``linear_fade``: a good level held, then a linear slide to (near) zero over ``fade_s``, held
  there, and a recovery: a walk leaving a building;
* ``flapping``: a rate that crosses ``center_bps`` (a plan's break-even rate) about
  ``crossings`` times over the trace at random times, each level a random factor above or
  below it and almost uncorrelated from one level to the next: a fast-fading cellular link;
* ``shapes``: one of each (a few seeds each), for a benchmark.

Rates are sampled every ``step_s``; "near zero" is ``floor_bps`` (a trace of only zeros would
carry nothing, and ``BandwidthTrace`` replay needs some rate to finish a transfer).
"""
from __future__ import annotations

import math
import random

from .traces import BandwidthTrace, BandwidthTraceError

FLOOR_BPS = 10e3  # "near zero": 10 kbit/s


def _positive(name: str, v: float, zero_ok: bool = False) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (
        v >= 0 if zero_ok else v > 0)
    if not ok:
        raise BandwidthTraceError(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0, "
                                  f"got {v!r}")
    return float(v)


def _grid(duration_s: float, step_s: float) -> list[float]:
    _positive("duration_s", duration_s)
    _positive("step_s", step_s)
    if step_s > duration_s:
        raise BandwidthTraceError(f"step_s {step_s!r} must not exceed duration_s {duration_s!r}")
    n = int(math.floor(duration_s / step_s + 1e-9))
    return [i * step_s for i in range(n)]


def _jitter(rng: random.Random, level: float, spread: float) -> float:
    return level * math.exp(rng.gauss(0.0, spread))


def cold_start_outage(seed: int = 0, good_bps: float = 12e6, good_s: float = 2.0,
                      outage_s: float = 25.0, duration_s: float = 90.0, step_s: float = 0.5,
                      floor_bps: float = FLOOR_BPS, jitter: float = 0.1) -> BandwidthTrace:
    """``good_bps`` for ``good_s``, ``floor_bps`` for ``outage_s``, then ``good_bps`` again."""
    _positive("good_bps", good_bps)
    _positive("good_s", good_s)
    _positive("outage_s", outage_s)
    _positive("floor_bps", floor_bps)
    _positive("jitter", jitter, zero_ok=True)
    rng = random.Random(seed)
    times = _grid(duration_s, step_s)
    rates = []
    for t in times:
        out = good_s <= t < good_s + outage_s
        rates.append(floor_bps if out else _jitter(rng, good_bps, jitter))
    return BandwidthTrace(tuple(times), tuple(rates), f"cold-outage-s{seed}")


def linear_fade(seed: int = 0, high_bps: float = 50e6, hold_s: float = 20.0,
                fade_s: float = 6.0, low_s: float = 20.0, duration_s: float = 100.0,
                step_s: float = 0.5, floor_bps: float = FLOOR_BPS,
                jitter: float = 0.1) -> BandwidthTrace:
    """``high_bps`` for a hold (its length drawn around ``hold_s``), a linear slide to
    ``floor_bps`` over ``fade_s``, ``floor_bps`` for ``low_s``, then a linear climb back over
    ``fade_s`` and ``high_bps`` to the end."""
    for name, v in (("high_bps", high_bps), ("hold_s", hold_s), ("fade_s", fade_s),
                    ("low_s", low_s), ("floor_bps", floor_bps)):
        _positive(name, v)
    _positive("jitter", jitter, zero_ok=True)
    rng = random.Random(seed)
    hold = hold_s * rng.uniform(0.5, 1.5)
    times = _grid(duration_s, step_s)
    rates = []
    for t in times:
        if t < hold:
            level = high_bps
        elif t < hold + fade_s:
            level = high_bps + (floor_bps - high_bps) * (t - hold) / fade_s
        elif t < hold + fade_s + low_s:
            level = floor_bps
        elif t < hold + 2 * fade_s + low_s:
            level = floor_bps + (high_bps - floor_bps) * (t - hold - fade_s - low_s) / fade_s
        else:
            level = high_bps
        rates.append(max(floor_bps, _jitter(rng, level, jitter) if level > floor_bps
                         else floor_bps))
    return BandwidthTrace(tuple(times), tuple(rates), f"fade-s{seed}")


def flapping(center_bps: float, seed: int = 0, crossings: int = 20, duration_s: float = 140.0,
             step_s: float = 0.5, spread: float = 4.0, jitter: float = 0.2) -> BandwidthTrace:
    """Levels alternating above and below ``center_bps`` (each a factor between 1 and
    ``spread`` from it, log-uniform), held for exponential times of mean duration/crossings,
    with per-sample ``jitter`` (log-normal)."""
    _positive("center_bps", center_bps)
    _positive("spread", spread)
    _positive("jitter", jitter, zero_ok=True)
    if spread <= 1:
        raise BandwidthTraceError(f"spread must be a factor > 1, got {spread!r}")
    if isinstance(crossings, bool) or not isinstance(crossings, int) or crossings < 1:
        raise BandwidthTraceError(f"crossings must be a whole number >= 1, got {crossings!r}")
    rng = random.Random(seed)
    times = _grid(duration_s, step_s)
    mean_hold = duration_s / crossings
    above = rng.random() < 0.5
    level, until = 0.0, -1.0
    rates = []
    for t in times:
        if t >= until:
            above = not above
            factor = math.exp(rng.uniform(0.0, math.log(spread)))
            level = center_bps * (factor if above else 1 / factor)
            until = t + max(step_s, rng.expovariate(1.0 / mean_hold))
        rates.append(_jitter(rng, level, jitter))
    return BandwidthTrace(tuple(times), tuple(rates), f"flap-s{seed}")


def shapes(center_bps: float, seeds: tuple[int, ...] = (0, 1)) -> list[BandwidthTrace]:
    """Each shape for each seed: cold start into an outage, a linear fade to (near) zero, and
    flapping around ``center_bps``."""
    out = []
    for s in seeds:
        out += [cold_start_outage(s), linear_fade(s), flapping(center_bps, s)]
    return out
