"""Two profiling runs of the same model agree: median relative difference over nodes > 0.5 ms.

Goal: ≤ 10%. Usage: python benchmarks/profile_repeat.py [--models a,b] [--repeat R]
"""
from __future__ import annotations

import argparse
import statistics

from tiercut import ProfileSettings, profile_model, zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,densenet121,vit_tiny")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--min-ms", type=float, default=0.5)
    args = ap.parse_args()
    settings = ProfileSettings(threads=args.threads, repeat=args.repeat)
    print(f"{'model':<16}{'nodes>0.5ms':>12}{'median rel diff':>17}{'p90 rel diff':>14}"
          f"{'whole ms (a, b)':>20}")
    for name in args.models.split(","):
        entry = zoo.entry(name)
        model, inputs = entry.build(), entry.example_inputs()
        a = profile_model(model, inputs, name=name, settings=settings)
        b = profile_model(model, inputs, name=name, settings=settings)
        diffs = [abs(x.latency_s - y.latency_s) / max(x.latency_s, y.latency_s)
                 for x, y in zip(a.nodes, b.nodes)
                 if max(x.latency_s, y.latency_s) > args.min_ms / 1e3]
        if not diffs:
            print(f"{name:<16}{0:>12}  (no node slower than {args.min_ms} ms)")
            continue
        p90 = statistics.quantiles(diffs, n=10)[-1] if len(diffs) > 1 else diffs[0]
        print(f"{name:<16}{len(diffs):>12}{statistics.median(diffs):>16.1%}{p90:>14.1%}"
              f"{a.model_latency_s * 1e3:>11.2f},{b.model_latency_s * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
