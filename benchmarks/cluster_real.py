"""Issue 21's figure for real: 4 unequal nodes on this machine (tier servers in their own
processes, pinned, CPU-capped at 0.5, 0.1, 0.3 and 0.2 of one CPU: 1:5), every pair of hosts
behind its own emulated link (100 Mbit/s, 2 ms), frames arriving at this process.

For ResNet-50 and MobileNetV2: the cluster planner's plan (exact), the placement-blind chain
over the nodes in their given order, the best single node, and the best plan on the k fastest
nodes for k = 2, 3, each streamed (``--frames`` frames, 2 per node in flight
and at least 2 over the smallest replica share; frames per
second measured steady, between the 20th and 80th percentile of the answers). Prints predicted
and measured frames per second, the error, each node's utilisation, and whether each added
node helped, predicted against measured. Every answer is checked against the whole model's.

Usage: python benchmarks/cluster_real.py [--models resnet50,mobilenet_v2] [--frames 20]
       [--caps 0.5,0.1,0.3,0.2] [--rate 100mbit] [--delay 2ms] [--json out/cluster-real.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tiercut.planner import Link
from tiercut.planner.scenario import parse_rate, parse_seconds
from tiercut.testbed.cluster import run_cluster_testbed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--caps", default="0.5,0.1,0.3,0.2")
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--delay", default="2ms")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    caps = [float(c) for c in args.caps.split(",")]
    link = Link(parse_rate(args.rate), parse_seconds(args.delay))
    out = {}
    for model in args.models.split(","):
        _, runs = run_cluster_testbed(model, caps, link, args.frames, marginal=True,
                                      log=lambda t: print(f"  {t}", flush=True))
        print(f"\n{model}: {len(caps)} nodes capped at {args.caps} CPU, links {args.rate} "
              f"{args.delay}")
        print(f"{'plan':<11} {'pred fps':>8} {'meas fps':>8} {'err':>7}  nodes / utilisation")
        rows = []
        for r in runs:
            used = ", ".join(f"{n} {u:.2f}" for n, u in sorted(r.utilisation.items()))
            print(f"{r.label:<11} {r.predicted_fps:8.2f} {r.measured_fps:8.2f} "
                  f"{r.error:+7.1%}  {used}")
            rows.append({"plan": r.label, "summary": r.plan.summary(),
                         "predicted_fps": r.predicted_fps, "measured_fps": r.measured_fps,
                         "error": r.error, "utilisation": r.utilisation})
        by = {r.label: r for r in runs}
        ladder = [by["single"], *(by[f"fastest {k}"] for k in range(2, len(caps))),
                  by["planned"]]
        print("does the k-th fastest node help? (predicted gain / measured gain)")
        for k in range(1, len(ladder)):
            a, b = ladder[k - 1], ladder[k]
            pg, mg = b.predicted_fps / a.predicted_fps, b.measured_fps / a.measured_fps
            agree = (pg > 1.01) == (mg > 1.01)
            print(f"  node {k + 1}: {pg:.2f}x / {mg:.2f}x  {'agree' if agree else 'DISAGREE'}")
        print(f"planned over chain: predicted {by['planned'].predicted_fps / by['chain'].predicted_fps:.2f}x, "
              f"measured {by['planned'].measured_fps / by['chain'].measured_fps:.2f}x; over the best "
              f"single node: measured {by['planned'].measured_fps / by['single'].measured_fps:.2f}x")
        out[model] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
