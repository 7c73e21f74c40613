"""Issue 21's divided stages for real: under a latency cap below the fastest node's frame,
only nodes that divide each frame by rows meet it. Unequal nodes on this machine (tier
servers in their own processes, pinned, CPU-capped), a shaping proxy per pair of hosts; the
planner's plan (``plan_cluster(divide=)``) streamed (``--frames`` frames, several in flight:
frames per second) and one frame at a time (a frame's latency, median), against the fastest
node alone, without the cap. Every answer is checked against the whole model's, within 1e-5
(a divided convolution's tiles round differently).

Usage: python benchmarks/cluster_divided.py [--models vgg16,resnet18] [--caps 0.6,0.6,0.5]
       [--rate 1gbit] [--delay 0.5ms] [--cap 0.8] [--frames 16] [--json out/cluster-divided.json]
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
    ap.add_argument("--models", default="vgg16,resnet18")
    ap.add_argument("--caps", default="0.6,0.6,0.5")
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--delay", default="0.5ms")
    ap.add_argument("--cap", type=float, default=0.8, help="of the fastest node's frame")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    caps = [float(c) for c in args.caps.split(",")]
    link = Link(parse_rate(args.rate), parse_seconds(args.delay))
    out = {}
    for model in args.models.split(","):
        _, runs = run_cluster_testbed(model, caps, link, args.frames, cap_of_single=args.cap,
                                      log=lambda t: print(f"  {t}", flush=True))
        print(f"\n{model}: {len(caps)} nodes capped at {args.caps} CPU, links {args.rate} "
              f"{args.delay}, latency cap {args.cap:g} of the fastest node's frame")
        print(f"{'plan':<22} {'pred fps':>8} {'meas fps':>8} {'err':>7} {'pred ms':>8} "
              f"{'meas ms':>8} {'err':>7}  stages")
        rows = []
        for r in runs:
            lat_err = r.measured_latency_s / r.plan.latency_s - 1
            print(f"{r.label:<22} {r.predicted_fps:8.2f} {r.measured_fps:8.2f} {r.error:+7.1%} "
                  f"{r.plan.latency_s * 1e3:8.1f} {r.measured_latency_s * 1e3:8.1f} "
                  f"{lat_err:+7.1%}  {r.plan.summary().split(': ', 1)[1]}")
            rows.append({"plan": r.label, "summary": r.plan.summary(),
                         "predicted_fps": r.predicted_fps, "measured_fps": r.measured_fps,
                         "predicted_latency_s": r.plan.latency_s,
                         "measured_latency_s": r.measured_latency_s,
                         "divisions": [s.division for s in r.plan.stages if s.division]})
        out[model] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
