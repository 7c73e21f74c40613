"""Adaptive vs oracle vs static on the shared traces, and load-aware vs load-blind under a
square-wave edge load (issue 5's figures).

Profiles: each model is measured here once (1 thread, repeat 3) and scaled: device 0.1×,
edge 1×, cloud 5×. Links: device-edge from the trace (+20 ms), device-cloud from the trace
(+45 ms), edge-cloud 1 Gbit/s, 20 ms. Raw tensors (no codec).

Arrivals: Poisson at ``--load`` (default 0.25) times the rate the device alone sustains (one
over the all-device latency), so that every policy's queue is stable (a fixed 1/s overloads a
device 0.1× running ResNet-50); ``--rate`` fixes it instead. 600 s or the trace's length,
3 seeds (1 with --quick). The static plan is the best for the mean rate of the first 5 s. The
oracle knows the trace but not the queues, so with queueing a causal policy can beat it; and
every policy here chooses by latency with nothing queued, so the heavier the load, the more
the queues (which none of them sees) decide the means. "now/or" is a reference that knows
the trace's rate at each request's start exactly (and nothing later), over the oracle: the
Irish 5G traces change every second and are nearly uncorrelated five seconds apart, so even
perfect knowledge of the present can be far from the oracle there; no causal policy that plans
from a rate can do better than that reference. "fa/or" is the adaptive policy set to follow
such a link closely (``FAST``: an idle link probed every 0.25 s, the estimate from the newest
transfer alone), over the oracle: nearer to rate-now, at the price of the probes' traffic.
"he/or" is the hedged policy (adaptive, and while the link is uncertain a request both sent
and run to the end on the device, the first answer winning) over the oracle, "fh/or" the same
with FAST, and "he E" its device energy over adaptive's: a request sent into an outage costs
the device's time instead of the outage's, and one kept on the device through the end of a
dip gets the link back, which no choice of one plan from a rate can do; the device's
redundant work is the price. "hl/or" is the hedged policy with ``LATE``: the device's run of a
remote plan starts only once the answer is half the plan's predicted latency late (a backup
request), so that it runs for late answers alone; the summary gives its energy.

Load-aware vs load-blind: device and edge only (LoADPart's setting), the edge's compute times
a square wave of 1x and 4x, each level held for 20 arrivals (at least 10 s), for each device
speed of ``--device-speeds`` (edge = 1; default 0.1 and 0.3). What load-awareness can gain is
set by that ratio: with the device at 0.1 the edge at 4x load (0.25) is still the faster, the
best plan does not change with the load, and nothing can be gained; with the device at 0.3 (a
board a third as fast as its edge server) the loaded edge is the slower, and the best plan
moves with the load. The gain is also given over the traces where the load-blind policy uses
the edge at all (elsewhere the edge's load cannot matter). It is run twice: on constant links
of 5-200 Mbit/s (LoADPart's setting: the load varies at a fixed bandwidth), and on the shared
traces. "now gain" is the reference LoadNow (the load-aware policy told the exact load at each
request's start) over load-blind: what a perfect load estimate would gain.

Traces: the shared Norway (10), FCC (first 4) and Irish 5G Download (7) traces as they are,
and the Norway traces scaled ×10 ("x10": 1-50 Mbit/s, LTE-like), because at their own rates
(0.1-6 Mbit/s) no plan but all-device is ever best for these models with raw tensors, so there
is nothing to adapt. Per trace: its p90/p10 rate ratio; the adaptive goals (within 10% of the
oracle; >= 20% better than static where p90/p10 >= 4) are judged per trace, and "cut" says
whether the oracle ever left its first plan (if not, no policy can gain on static).

    .venv/bin/python benchmarks/adapt_policies.py [--models resnet50,mobilenet_v2] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import NamedTuple

import torch

from tiercut.adapt.policies import AdaptivePolicy, LoadAwarePolicy
from tiercut.link.traces import BandwidthTrace, load_trace
from tiercut.planner import Host, Link, Scenario, baseline
from tiercut.measure.predict import scale_profile
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.sim.run import prepare, run_policies
from tiercut.adapt.estimators import PROBE_BITS
from tiercut.sim.simulator import Arrivals
from tiercut.sim.timeline import Timeline
from tiercut.zoo import resolve

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
SPEEDS = (("device", 0.1), ("edge", 1.0), ("cloud", 5.0))
NORWAY_SCALE = 10.0  # the Norway traces again, x10: see the module's note
LOAD_HOLD = 20  # arrivals per level of the edge's load square wave
FIXED_MBIT = (5, 20, 50, 100, 200)  # constant links for load-aware vs blind (LoADPart's setting)
FAST = dict(probe_every_s=0.25, window=1)  # "fast": adaptive probing an idle link 4x a second
LATE = dict(hedge_after=0.5)  # "hl": hedged, the device's run started once the answer is late


def scenario(profile, tiers: tuple[str, ...] = ("device", "edge", "cloud"),
             device_speed: float | None = None) -> Scenario:
    speeds = {t: s for t, s in SPEEDS}
    if device_speed is not None:
        speeds["device"] = device_speed
    hosts = tuple(Host(t, t, scale_profile(profile, speeds[t], t)) for t in tiers)
    links = {("device", "edge"): Link(10e6, 0.020), ("device", "cloud"): Link(10e6, 0.045),
             ("edge", "cloud"): Link(1e9, 0.020)}
    return Scenario(tiers, hosts, {k: v for k, v in links.items() if set(k) <= set(tiers)})


def measured(model: str, trace: BandwidthTrace):
    """``model`` profiled here (1 thread, repeat 3), its scenario, and the device alone's
    latency in it (the arrival rates are set from that)."""
    entry = resolve(model)
    prof = profile_model(entry.build(), entry.example_inputs(), name=model,
                         settings=ProfileSettings(threads=1, repeat=3))
    sc = scenario(prof)
    device_s = prepare(sc, trace).simulator.costs(baseline(sc, "device")).latency_at(1e6)
    return prof, sc, device_s


def traces(quick: bool) -> list[BandwidthTrace]:
    pens = sorted((TRACES / "pensieve-cooked/src/cooked_test_traces").glob("norway_*"))
    fcc = sorted((TRACES / "pensieve-cooked/src/cooked_traces").glob("trace_*"))
    irish = sorted((TRACES / "irish-5g/5G-production-dataset/Download").rglob("*.csv"))
    if quick:
        pens, fcc, irish = pens[:2], fcc[:1], irish[:2]
    else:
        fcc = fcc[:4]
    raw = [load_trace(f) for f in pens + fcc + irish]
    return raw + [load_trace(f).scaled(NORWAY_SCALE) for f in pens]


def variation(tr: BandwidthTrace) -> float:
    """Ratio of the 90th to the 10th percentile rate (time-weighted by sample)."""
    rates = sorted(r for r in tr.rates_bps if r > 0)
    return rates[int(0.9 * (len(rates) - 1))] / rates[int(0.1 * (len(rates) - 1))]


class RateNow(AdaptivePolicy):
    """A reference, not a policy one can deploy: the decision table at the trace's exact rate
    at the moment the request starts (perfect knowledge of the present, none of the future).
    No estimator can do better than knowing the present, so where this is more than 10% off
    the oracle the oracle's figure is out of reach of any policy that plans from a rate."""
    name = "rate-now"
    observes = False

    def __init__(self, setting):
        super().__init__(setting.table, setting.initial_bps)
        self.timeline = setting.timeline

    def next_plan(self, now: float, backlog_s: float = 0.0):
        return self.table.best(max(self.timeline.rate_at(now), 1.0))  # 1 bit/s for an outage


class TraceRow(NamedTuple):
    """One trace's figures for one model (ratios are over the oracle, gains over static)."""
    model: str
    trace: str
    var: float  # p90/p10 rate
    ratio: float  # adaptive
    gain: float
    cut_moves: bool  # the oracle left its first plan
    now: float  # rate-now
    fast_ratio: float
    oracle_gain: float
    hedged: float
    fast_hedged: float
    hedged_gain: float
    hedged_energy: float  # hedged over adaptive device energy
    late: float  # hedged with LATE
    late_gain: float
    late_energy: float


def means(setup, names, rate: float, duration: float, seeds,
          rate_now: bool = False, energy: dict | None = None) -> tuple[dict, dict]:
    """Mean latency per policy over the seeds, and plans used per policy (most over seeds);
    ``energy``, when given, gets each policy's mean device energy per request."""
    out = {n: [] for n in (*names, *(["rate-now"] if rate_now else []))}
    used = {n: 0 for n in out}
    joules = {n: [] for n in out}
    for seed in seeds:
        results = run_policies(setup, names, Arrivals("poisson", rate), duration, seed)
        if rate_now:
            results.append(setup.simulator.run(RateNow(setup.setting), Arrivals("poisson", rate),
                                               duration, seed))
        for r in results:
            out[r.policy].append(r.summary()["mean_s"])
            joules[r.policy].append(float(r.energy_j.mean()))
            used[r.policy] = max(used[r.policy], len(r.cuts))
    if energy is not None:
        energy.update({k: statistics.fmean(v) for k, v in joules.items()})
    return {k: statistics.fmean(v) for k, v in out.items()}, used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load", type=float, default=0.25,
                    help="arrival rate as a fraction of what the device alone sustains")
    ap.add_argument("--rate", type=float, default=None, help="fixed arrival rate (per second)")
    ap.add_argument("--device-speeds", type=lambda t: [float(x) for x in t.split(",")],
                    default=[0.1, 0.3], help="device speeds (edge = 1) for load-aware vs blind")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = (0,) if args.quick else (0, 1, 2)
    all_traces = traces(args.quick)
    summary, load_summary = [], []
    for model in args.models.split(","):
        prof, sc, device_s = measured(model, all_traces[0])
        rate = args.rate or args.load / device_s
        print(f"\n== {model}: whole model {prof.total_latency_s * 1e3:.1f} ms here; device x0.1 "
              f"({device_s * 1e3:.0f} ms alone), edge x1, cloud x5; Poisson {rate:.3g}/s")
        print(f"{'trace':26s} {'Mb/s':>6s} {'p90/p10':>7s} {'cut':>3s} {'static ms':>9s} "
              f"{'adapt ms':>9s} {'oracle ms':>9s} {'ad/or':>6s} {'fa/or':>6s} {'he/or':>6s} "
              f"{'fh/or':>6s} {'hl/or':>6s} {'he E':>5s} {'now/or':>6s} {'ad vs st':>8s} "
              f"{'he vs st':>8s} {'or vs st':>8s}  goals (adaptive; hedged)")
        for tr in all_traces:
            duration = min(600.0, tr.duration_s)
            setup = prepare(sc, tr)
            joules: dict = {}
            m, used = means(setup, ["static", "adaptive", "hedged", "oracle"], rate, duration,
                            seeds, True, joules)
            fast = means(prepare(sc, tr, **FAST), ["adaptive", "hedged"], rate, duration,
                         seeds)[0]
            late_j: dict = {}
            late = means(prepare(sc, tr, **LATE), ["hedged"], rate, duration, seeds,
                         energy=late_j)[0]["hedged"]
            var = variation(tr)
            ratio, gain = m["adaptive"] / m["oracle"], 1 - m["adaptive"] / m["static"]
            fast_ratio = fast["adaptive"] / m["oracle"]
            hedged, fast_hedged = m["hedged"] / m["oracle"], fast["hedged"] / m["oracle"]
            hedged_gain = 1 - m["hedged"] / m["static"]
            goals = [f"oracle {'ok' if ratio <= 1.10 else 'MISSED'}"
                     f"{' (fast ok)' if ratio > 1.10 and fast_ratio <= 1.10 else ''}"
                     f"; {'ok' if hedged <= 1.10 else 'MISSED'}"
                     f"{' (fast ok)' if hedged > 1.10 and fast_hedged <= 1.10 else ''}"]
            if var >= 4:
                goals.append(f">=20% {'ok' if gain >= 0.20 else 'MISSED'}; "
                             f"{'ok' if hedged_gain >= 0.20 else 'MISSED'}")
            now = m["rate-now"] / m["oracle"]
            summary.append(TraceRow(model, tr.name, var, ratio, gain, used["oracle"] > 1, now,
                                    fast_ratio, 1 - m["oracle"] / m["static"], hedged,
                                    fast_hedged, hedged_gain,
                                    joules["hedged"] / joules["adaptive"], late / m["oracle"],
                                    1 - late / m["static"], late_j["hedged"] / joules["adaptive"]))
            print(f"{tr.name[:26]:26s} {tr.mean_bps / 1e6:6.2f} {var:7.1f} "
                  f"{'yes' if used['oracle'] > 1 else 'no':>3s} {m['static'] * 1e3:9.1f} "
                  f"{m['adaptive'] * 1e3:9.1f} {m['oracle'] * 1e3:9.1f} {ratio:6.3f} "
                  f"{fast_ratio:6.3f} {hedged:6.3f} {fast_hedged:6.3f} {late / m['oracle']:6.3f} "
                  f"{joules['hedged'] / joules['adaptive']:5.2f} {now:6.3f} {gain:8.1%} "
                  f"{hedged_gain:8.1%} {1 - m['oracle'] / m['static']:8.1%}  {', '.join(goals)}")
        for speed in args.device_speeds:
            load_aware(prof, model, speed, fixed_rates(), args.load, seeds, load_summary,
                       "fixed links")
            load_aware(prof, model, speed, all_traces, args.load, seeds, load_summary,
                       "shared traces")
    print("\n== summary: adaptive within 10% of oracle; >= 20% better than static (p90/p10 >= 4)")
    for model in args.models.split(","):
        rows = [r for r in summary if r.model == model]
        close = sum(r.ratio <= 1.10 for r in rows)
        beyond = [r for r in rows if r.now > 1.10]
        varied = [r for r in rows if r.var >= 4]
        moved = [r for r in varied if r.cut_moves]
        print(f"{model}: within 10% of oracle on {close}/{len(rows)} traces; on the "
              f"{len(varied)} traces varying >= 4x: >= 20% better than static on "
              f"{sum(r.gain >= 0.20 for r in varied)} ({len(moved)} of them ever change the "
              f"oracle's cut)")
        reachable = [r for r in varied if r.oracle_gain >= 0.20]
        print(f"  the oracle itself is >= 20% better than static on {len(reachable)} of those; "
              f"adaptive is on {sum(r.gain >= 0.20 for r in reachable)} of them")
        print(f"  knowing the present rate exactly (rate-now) is itself more than 10% off the "
              f"oracle on {len(beyond)} traces; adaptive is within 10% of rate-now on "
              f"{sum(r.ratio / r.now <= 1.10 for r in rows)}/{len(rows)}")
        print(f"  fast (probing an idle link every {FAST['probe_every_s']} s, estimate from the "
              f"newest transfer): within 10% of oracle on "
              f"{sum(r.fast_ratio <= 1.10 for r in rows)}/{len(rows)}; its probes cost "
              f"{PROBE_BITS / FAST['probe_every_s'] / 1e6:.1f} Mbit/s of an idle link")
        energy = [r.hedged_energy for r in rows]
        print(f"  hedged (adaptive, raced against the device while the link is uncertain): "
              f"within 10% of oracle on {sum(r.hedged <= 1.10 for r in rows)}/{len(rows)}, "
              f"fast hedged on {sum(r.fast_hedged <= 1.10 for r in rows)}/{len(rows)}; >= 20% "
              f"better than static on "
              f"{sum(r.hedged_gain >= 0.20 for r in varied)} of the {len(varied)} varying >= 4x "
              f"({sum(r.hedged_gain >= 0.20 for r in reachable)} of the {len(reachable)} where the "
              f"oracle is); device energy x{statistics.fmean(energy):.2f} of adaptive's on "
              f"average, x{max(energy):.2f} at most")
        energy = [r.late_energy for r in rows]
        print(f"  hedged, the device's run started once the answer is {LATE['hedge_after']:g} of "
              f"the plan's predicted latency late: within 10% of oracle on "
              f"{sum(r.late <= 1.10 for r in rows)}/{len(rows)}; >= 20% better than static on "
              f"{sum(r.late_gain >= 0.20 for r in varied)} ("
              f"{sum(r.late_gain >= 0.20 for r in reachable)} of the {len(reachable)}); device "
              f"energy x{statistics.fmean(energy):.2f} of adaptive's on average, "
              f"x{max(energy):.2f} at most")
    print("\n== summary: load-aware vs load-blind adaptive (goal: >= 14% lower mean latency)")
    for model, speed, label, mean, best, used_mean, used in load_summary:
        print(f"{model}, device x{speed:g}, {label}: mean {mean:.1%} over all, best "
              f"{best:.1%}; mean {used_mean:.1%} over the {used} where the edge is used")


class LoadNow(LoadAwarePolicy):
    """A reference, not a deployable policy: the load-aware policy told the edge's exact load
    factor when each request starts (its bandwidth estimate as usual): what a perfect load
    estimate would gain."""
    name = "load-now"

    def __init__(self, setting, wave: BandwidthTrace):
        super().__init__(setting.load_table, setting.initial_bps)
        self.wave = Timeline(wave)

    def next_plan(self, now: float, backlog_s: float = 0.0):
        self.load.factor = self.wave.rate_at(now)
        return super().next_plan(now, backlog_s)


def fixed_rates() -> list[BandwidthTrace]:
    """Constant device links, LoADPart's setting (it varies the load at fixed bandwidths)."""
    return [BandwidthTrace((0.0, 600.0), (m * 1e6, m * 1e6), f"constant {m:g} Mbit/s")
            for m in FIXED_MBIT]


def load_aware(prof, model: str, device_speed: float, traces_: list, load: float, seeds,
               summary: list, label: str) -> None:
    """Load-aware vs load-blind adaptive: device and edge only, as in LoADPart (with the
    cloud 5x faster and 25 ms further, the edge's load hardly matters: the cloud takes the
    work); the edge's compute times a square wave of 1x and 4x, each level held for LOAD_HOLD
    arrivals (at least 10 s): a load seen only every few seconds cannot be followed if it
    flips faster. Arrivals: ``load`` times what this device alone sustains."""
    sc2 = scenario(prof, ("device", "edge"), device_speed)
    device_s = prepare(sc2, traces_[0]).simulator.costs(baseline(sc2, "device")).latency_at(1e6)
    rate = load / device_s
    hold = max(10.0, LOAD_HOLD / rate)
    wave = BandwidthTrace((0.0, hold), (1.0, 4.0), "square-1x-4x")
    print(f"-- {model}, {label}: device x{device_speed:g} + edge x1; edge load square wave "
          f"1x/4x ({hold:.0f} s each); Poisson {rate:.3g}/s")
    print(f"{'trace':30s} {'blind ms':>9s} {'aware ms':>9s} {'gain':>6s} {'now gain':>8s}  "
          f"edge used")
    gains, used_gains = [], []
    for tr in traces_:
        duration = min(600.0, tr.duration_s)
        setup = prepare(sc2, tr, wave, "edge")
        res, _ = means(setup, ["adaptive", "loadaware"], rate, duration, seeds)
        blind, aware = res["adaptive"], res["loadaware"]
        now = statistics.fmean(setup.simulator.run(LoadNow(setup.setting, wave), Arrivals(
            "poisson", rate), duration, seed).latency_s.mean() for seed in seeds)
        gains.append(1 - aware / blind)
        edge = _edge_used(setup, rate, duration)
        if edge:
            used_gains.append(gains[-1])
        print(f"{tr.name[:30]:30s} {blind * 1e3:9.1f} {aware * 1e3:9.1f} {gains[-1]:6.1%} "
              f"{1 - now / blind:8.1%}  {'yes' if edge else 'no'}")
    used_mean = statistics.fmean(used_gains) if used_gains else float("nan")
    print(f"load-aware gain: mean {statistics.fmean(gains):.1%}, best {max(gains):.1%}; on the "
          f"{len(used_gains)} where the blind policy uses the edge: mean {used_mean:.1%}")
    summary.append((model, device_speed, label, statistics.fmean(gains), max(gains), used_mean,
                    len(used_gains)))


def _edge_used(setup, rate: float, duration: float) -> bool:
    """Whether the load-blind adaptive policy ever puts work on the edge."""
    r = run_policies(setup, ["adaptive"], Arrivals("poisson", rate), duration, 0)[0]
    return any("edge:" in c for c in r.cuts)


if __name__ == "__main__":
    main()
