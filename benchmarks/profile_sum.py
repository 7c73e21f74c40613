"""Σ per-node latency against whole-model latency, for every zoo model at batch 1.

Goal: the ratio within 1 ± 0.15 at the same thread count. Usage:
    python benchmarks/profile_sum.py [--threads N] [--repeat R] [--models a,b]
"""
from __future__ import annotations

import argparse

from tiercut import ProfileSettings, profile_model, zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--models", default=",".join(zoo.names()))
    args = ap.parse_args()
    settings = ProfileSettings(threads=args.threads, repeat=args.repeat)
    print(f"{'model':<16}{'nodes':>6}{'Σ nodes ms':>12}{'whole ms':>10}{'ratio':>8}  within ±15%")
    worst = 0.0
    for name in args.models.split(","):
        entry = zoo.entry(name)
        p = profile_model(entry.build(), entry.example_inputs(), name=name, settings=settings)
        ratio = p.total_latency_s / p.model_latency_s
        worst = max(worst, abs(ratio - 1))
        print(f"{name:<16}{len(p.nodes):>6}{p.total_latency_s * 1e3:>12.2f}"
              f"{p.model_latency_s * 1e3:>10.2f}{ratio:>8.3f}  {'yes' if abs(ratio - 1) <= 0.15 else 'NO'}")
    print(f"threads={p.settings['threads']} repeat={args.repeat}; worst |ratio-1| = {worst:.3f}")


if __name__ == "__main__":
    main()
