"""Adaptive vs oracle vs static on the shared traces, and load-aware vs load-blind under a
square-wave edge load (issue 5's figures).

Profiles: each model is measured here once (1 thread, repeat 3) and scaled: device 0.1×,
edge 1×, cloud 5×. Links: device-edge from the trace (+20 ms), device-cloud from the trace
(+45 ms), edge-cloud 1 Gbit/s, 20 ms. Poisson arrivals at 1 request/s for 600 s (or the
trace's length), 3 seeds. The static plan is the best for the mean rate of the first 5 s.

    .venv/bin/python benchmarks/adapt_policies.py [--models resnet50,mobilenet_v2] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from tiercut.link.traces import BandwidthTrace, load_trace
from tiercut.planner import Host, Link, Scenario
from tiercut.predict import scale_profile
from tiercut.profiler import ProfileSettings, profile_model
from tiercut.sim.run import prepare, run_policies
from tiercut.sim.simulator import Arrivals
from tiercut.zoo import resolve

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
SPEEDS = (("device", 0.1), ("edge", 1.0), ("cloud", 5.0))


def scenario(profile) -> Scenario:
    hosts = tuple(Host(t, t, scale_profile(profile, s, t)) for t, s in SPEEDS)
    links = {("device", "edge"): Link(10e6, 0.020), ("device", "cloud"): Link(10e6, 0.045),
             ("edge", "cloud"): Link(1e9, 0.020)}
    return Scenario(tuple(t for t, _ in SPEEDS), hosts, links)


def traces(quick: bool) -> list[BandwidthTrace]:
    pens = sorted((TRACES / "pensieve-cooked/src/cooked_test_traces").glob("norway_*"))
    fcc = sorted((TRACES / "pensieve-cooked/src/cooked_traces").glob("trace_*"))
    irish = sorted((TRACES / "irish-5g/5G-production-dataset/Download").rglob("*.csv"))
    files = pens + fcc[:4] + irish if not quick else pens[:3] + fcc[:1] + irish[:1]
    return [load_trace(f) for f in files]


def variation(tr: BandwidthTrace) -> float:
    """Ratio of the 90th to the 10th percentile rate (time-weighted by sample)."""
    rates = sorted(r for r in tr.rates_bps if r > 0)
    return rates[int(0.9 * (len(rates) - 1))] / rates[int(0.1 * (len(rates) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = (0,) if args.quick else (0, 1, 2)
    all_traces = traces(args.quick)
    for model in args.models.split(","):
        entry = resolve(model)
        prof = profile_model(entry.build(), entry.example_inputs(), name=model,
                             settings=ProfileSettings(threads=1, repeat=3))
        sc = scenario(prof)
        print(f"\n== {model}: whole model {prof.total_latency_s * 1e3:.1f} ms here; device x0.1, "
              f"edge x1, cloud x5; Poisson {args.rate:g}/s")
        print(f"{'trace':34s} {'mean Mb/s':>9s} {'p90/p10':>7s} {'static ms':>9s} "
              f"{'adapt ms':>9s} {'oracle ms':>9s} {'ad/or':>6s} {'ad vs st':>8s}")
        for tr in all_traces:
            duration = min(600.0, tr.duration_s)
            setup = prepare(sc, tr)
            means = {n: [] for n in ("static", "adaptive", "oracle")}
            for seed in seeds:
                for r in run_policies(setup, list(means), Arrivals("poisson", args.rate),
                                      duration, seed):
                    means[r.policy].append(r.summary()["mean_s"])
            m = {k: statistics.fmean(v) for k, v in means.items()}
            print(f"{tr.name[:34]:34s} {tr.mean_bps / 1e6:9.2f} {variation(tr):7.1f} "
                  f"{m['static'] * 1e3:9.1f} {m['adaptive'] * 1e3:9.1f} {m['oracle'] * 1e3:9.1f} "
                  f"{m['adaptive'] / m['oracle']:6.3f} {1 - m['adaptive'] / m['static']:8.1%}")
        # load-aware vs load-blind: square wave 1x/4x on the edge, period 20 s
        load = BandwidthTrace((0.0, 10.0), (1.0, 4.0), "square-1x-4x")
        print(f"-- {model}: edge load square wave 1x/4x (10 s each)")
        print(f"{'trace':34s} {'blind ms':>9s} {'aware ms':>9s} {'gain':>6s}")
        gains = []
        for tr in all_traces:
            duration = min(600.0, tr.duration_s)
            setup = prepare(sc, tr, load, "edge")
            res = {n: [] for n in ("adaptive", "loadaware")}
            for seed in seeds:
                for r in run_policies(setup, list(res), Arrivals("poisson", args.rate),
                                      duration, seed):
                    res[r.policy].append(r.summary()["mean_s"])
            blind, aware = (statistics.fmean(res[k]) for k in ("adaptive", "loadaware"))
            gains.append(1 - aware / blind)
            print(f"{tr.name[:34]:34s} {blind * 1e3:9.1f} {aware * 1e3:9.1f} {gains[-1]:6.1%}")
        print(f"load-aware gain: mean {statistics.fmean(gains):.1%}, best {max(gains):.1%}")


if __name__ == "__main__":
    main()
