"""Many users sharing edge servers: who serves each request, and does it stay stable?

10,000 users walk (random waypoint, 0.5-1.5 m/s, 30 s pauses) over 1 km x 1 km covered by
100 edge servers on a 10 x 10 grid (100 m apart, cells of 75 m radius, 2 cores each). Each
user asks Poisson(``rate``) times a second. The model is MobileNetV2, measured here by
tiercut's profiler (1 thread, the edge at 1x, the profiled device at 0.1x, each user's device
0.5x, 1x or 2x of that at random), its cut options the plans of the decision table over
bandwidth and edge load (``tiercut.fleet.options_for``). Every cell's 20 MHz (the mobility
Radio's log-distance model) is shared by the users attached to it, each server's cores by
the requests sent to it; moving a user's state to another server costs 50 ms (assumed).

Controllers (``tiercut.fleet.controllers``): nearest (tiercut's planner per user, blind to
load), nearest with a load-aware cut (LoADPart's choice on a fixed server), load-aware (cut
and server together, by the waits now), drift-plus-penalty (V = 0.3 s, the waits in the
penalty) and the textbook drift-plus-penalty (V = 1 s, zero-queue latency as the penalty).
Then a V sweep, the same with a cloud behind the edges (4x an edge server's speed, elastic,
1 Gbit/s and 20 ms one way: an assumption), one hour simulated (the scale figure: wall seconds for one simulated hour of
10,000 users and 100 servers), and the same with per-cell bandwidth traces (the shared Norway
3G traces x10, one per cell, from a random point each).

"stable": the worst queue's wait is not growing (``Result.stable``). "sw/uh": state moves per
user-hour. Latencies are the fluid queue model's (``tiercut.fleet.simulate``), not measured.

    .venv/bin/python benchmarks/fleet.py [--quick] [--users 10000] [--seconds 600]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tiercut.fleet import (Cloud, DriftPlusPenalty, Edges, Fleet, LoadAware,  # noqa: E402
                           Nearest, NearestLoadAware, Users, Walkers, options_for, run)
from tiercut.link.traces import load_trace  # noqa: E402
from tiercut.measure.predict import scale_profile  # noqa: E402
from tiercut.measure.profiler import ProfileSettings, profile_model  # noqa: E402
from tiercut.mobility import World  # noqa: E402
from tiercut.planner import Host, Link, Scenario  # noqa: E402
from tiercut.zoo import resolve  # noqa: E402

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
SWITCH_S = 0.05


def cut_options(model: str):
    torch.set_num_threads(1)
    entry = resolve(model)
    prof = profile_model(entry.build(), entry.example_inputs(), name=model,
                         settings=ProfileSettings(threads=1, repeat=3))
    sc = Scenario(("device", "edge"),
                  (Host("device", "device", scale_profile(prof, 0.1, "device")),
                   Host("edge", "edge", scale_profile(prof, 1.0, "edge"))),
                  {("device", "edge"): Link(10e6, 0.005)})
    return options_for(sc)


def fleet(options, n: int, rate: float, seed: int, traces=None, cloud=None) -> Fleet:
    world = World.grid(10, 10, spacing_m=100.0, radius_m=75.0)
    rng = np.random.default_rng(seed)
    users = Users([f"user-{i}" for i in range(n)], rate, rng.choice([0.5, 1.0, 2.0], n),
                  np.zeros((n, 2)))
    return Fleet(Edges(world, cores=2, cell_traces=traces, seed=seed, cloud=cloud), users,
                 options,
                 walkers=Walkers(n, 1000.0, (0.5, 1.5), pause_s=30.0, seed=seed),
                 switch_s=SWITCH_S)


HEAD = (f"{'rate/s':>6} {'controller':24} {'requests':>9} {'mean ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'local':>6} {'cloud':>6} {'sw/uh':>6} {'wait s':>7} {'stable':>6} {'wall s':>7}")


def row(rate: float, r, n: int) -> str:
    worst = float(np.maximum(r.wait_series, r.air_series)[-max(1, len(r.wait_series) // 10):]
                  .mean())
    return (f"{rate:6.2f} {r.controller:24} {r.requests:9d} {r.mean_s*1e3:8.0f} "
            f"{r.p95_s*1e3:8.0f} {r.p99_s*1e3:8.0f} {r.local_share:6.2f} {r.cloud_share:6.2f} "
            f"{r.switches / n / (r.sim_s / 3600):6.2f} {worst:7.2f} {str(r.stable):>6} "
            f"{r.wall_s:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--rates", default="0.03,0.1,0.3")
    ap.add_argument("--quick", action="store_true", help="2,000 users, 120 s, no hour")
    args = ap.parse_args()
    n, secs = (2000, 120.0) if args.quick else (args.users, args.seconds)
    options = cut_options(args.model)
    print(f"{args.model} cut options (device at its profiled speed, edge at 1x):")
    for o in options:
        print(f"  {o.name:40} device {o.device_s*1e3:6.1f} ms  radio {o.bits/1e3:6.0f} kbit  "
              f"edge {o.edge_s*1e3:5.1f} ms  fixed {o.fixed_s*1e3:4.1f} ms")
    print(f"\n{n} users, 100 servers, {secs:.0f} s simulated, slots of 1 s")
    print(HEAD)
    controllers = (Nearest(), NearestLoadAware(), LoadAware(), DriftPlusPenalty(0.3),
                   DriftPlusPenalty(1.0, waits=False))
    for rate in (float(x) for x in args.rates.split(",")):
        for ctl in controllers:
            print(row(rate, run(fleet(options, n, rate, 0), ctl, secs), n), flush=True)
    rate = 0.3 if args.quick else 0.1
    print(f"\ndrift-plus-penalty against V at rate {rate}/s")
    print(HEAD)
    for v in (0.03, 0.1, 0.3, 1.0, 3.0):
        for waits in (True, False):
            r = run(fleet(options, n, rate, 0), DriftPlusPenalty(v, waits=waits), secs)
            print(row(rate, r, n), flush=True)
    files = sorted((TRACES / "pensieve-cooked/src/cooked_test_traces").glob("norway_*"))
    if files:
        traces = [load_trace(f).scaled(10.0) for f in files]
        print(f"\nper-cell traces: {len(traces)} Norway traces x10, one per cell, rate {rate}/s")
        print(HEAD)
        for ctl in controllers:
            r = run(fleet(options, n, rate, 0, traces), ctl, secs)
            print(row(rate, r, n), flush=True)
    else:
        print(f"\nper-cell traces skipped: no Norway traces under {TRACES}")
    cloud = Cloud(speed=4.0, backhaul_bps=1e9, delay_s=0.02)
    print(f"\nwith a cloud behind the edges (4x an edge server, no queue; 1 Gbit/s and 20 ms "
          f"one way from any edge server)")
    print(HEAD)
    for each in (float(x) for x in args.rates.split(",")):
        for ctl in (Nearest(), LoadAware(), DriftPlusPenalty(0.3)):
            r = run(fleet(options, n, each, 0, cloud=cloud), ctl, secs)
            print(row(each, r, n), flush=True)
    if not args.quick:
        print(f"\none simulated hour, {n} users, 100 servers, rate {rate}/s")
        print(HEAD)
        for ctl in (LoadAware(), DriftPlusPenalty(0.3)):
            r = run(fleet(options, n, rate, 1), ctl, 3600.0)
            print(row(rate, r, n), flush=True)
            print(f"  wall seconds per simulated hour: {r.wall_s * 3600 / r.sim_s:.1f}")


if __name__ == "__main__":
    main()
