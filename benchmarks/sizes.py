"""Costs at batch sizes never profiled: interpolated against measured, and the plan per batch.

Profiles a zoo model at a few batches (default 1, 4, 16), predicts others (default 2, 8, 32;
32 is extrapolated) with ``SizedProfiles.at``, profiles those too, and prints the predicted and
measured whole-model latency and Σ node medians with their error. Then it plans every batch
for a device 0.1x and an edge 1x this host, at 10 and 100 Mbit/s (5 ms one way), from the
interpolated costs (the measured ones at the profiled batches), as ``SizePlanner`` does for
``SizedClient``. Usage:
    python benchmarks/sizes.py [--model mobilenet_v2] [--threads 1] [--repeat 5]
        [--profiled 1,4,16] [--predicted 2,8,32]
"""
from __future__ import annotations

import argparse
import sys
import time

from tiercut import zoo
from tiercut.measure import ProfileSettings, scale_profile
from tiercut.measure.sizes import profile_sizes
from tiercut.planner import Host, Scenario, parse_link, plan

RATES = ("10mbit", "100mbit")


def scenario(profile, rate: str) -> Scenario:
    hosts = (Host("device", "device", scale_profile(profile, 0.1, "device")),
             Host("edge", "edge", scale_profile(profile, 1.0, "edge")))
    return Scenario(("device", "edge"), hosts, {("device", "edge"): parse_link(f"{rate},5ms")})


def sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(","))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--profiled", type=sizes, default=(1, 4, 16))
    ap.add_argument("--predicted", type=sizes, default=(2, 8, 32))
    args = ap.parse_args()
    settings = ProfileSettings(threads=args.threads, repeat=args.repeat, warmup=args.warmup)
    entry = zoo.entry(args.model)

    t0 = time.perf_counter()
    sized = profile_sizes(entry, args.profiled, settings)
    truth = profile_sizes(entry, args.predicted, settings)
    print(f"profiled {args.model} at batches {list(args.profiled)} and {list(args.predicted)} "
          f"({len(sized.profiles[0].nodes)} nodes, {args.threads} thread(s), repeat "
          f"{args.repeat}) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    print(f"\n{args.model}: predicted from batches {list(args.profiled)} vs measured")
    print("| batch | whole model ms pred / meas | error | Σ nodes ms pred / meas | error |")
    print("|---|---|---|---|---|")
    for size, measured in zip(truth.sizes, truth.profiles):
        p = sized.at(size)
        whole_err = 100 * (p.model_latency_s / measured.model_latency_s - 1)
        sum_err = 100 * (p.total_latency_s / measured.total_latency_s - 1)
        print(f"| {size} | {1e3 * p.model_latency_s:.1f} / {1e3 * measured.model_latency_s:.1f} "
              f"| {whole_err:+.1f} % | {1e3 * p.total_latency_s:.1f} / "
              f"{1e3 * measured.total_latency_s:.1f} | {sum_err:+.1f} % |")

    every = sorted(set(args.profiled) | set(args.predicted))
    print("\nplan per batch (device 0.1x, edge 1x, 5 ms one way): placement, predicted ms "
          "(from measured costs at the predicted batches in brackets)")
    print("| batch | " + " | ".join(f"{r}/s" for r in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    measured_at = dict(zip(truth.sizes, truth.profiles))
    for size in every:
        cells = []
        for rate in RATES:
            chosen = plan(scenario(sized.at(size), rate))
            cell = f"{chosen.placement()}, {1e3 * chosen.total_s:.0f}"
            if size in measured_at:
                check = plan(scenario(measured_at[size], rate))
                cell += f" [{check.placement()}, {1e3 * check.total_s:.0f}]"
            cells.append(cell)
        print(f"| {size}{'' if size in sized.sizes else '*'} | " + " | ".join(cells) + " |")
    print("(* interpolated or extrapolated costs)")


if __name__ == "__main__":
    main()
