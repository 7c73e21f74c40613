"""The division planner's exact search against brute force and its one-order heuristic: the
heuristic's gap to the exact optimum and both searches' times, on random hosts and links over
tileable runs of VGG-16, ResNet-18 and ResNet-50 (this machine's profile-free FLOP seconds:
the gap depends on the ratios, not on the absolute times).

Usage: python benchmarks/decompose_planner.py [--cases 60] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from tiercut import trace
from tiercut.decompose.planner import (Worker, best_division, brute_division, candidate_runs,
                                       row_costs)
from tiercut.zoo import entry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pools = {}
    for name in ("vgg16", "resnet18", "resnet50"):
        e = entry(name)
        g = trace(e.build(), e.example_inputs(), name=name)
        pools[name] = (g, candidate_runs(g))
    gaps, exact_s, heur_s, brute_checked, brute_agree = [], [], [], 0, 0
    for case in range(args.cases):
        name = rng.choice(sorted(pools))
        g, runs = pools[name]
        run = rng.choice(runs)
        costs = row_costs(run)
        n = rng.randint(2, 6)
        workers = []
        for i in range(n):
            speed = rng.choice([0.25, 0.5, 1.0, 1.0, 2.0, 4.0])
            workers.append(Worker(f"h{i}", {v: max(g[v].flops, 1) / 2e10 / speed
                                            for v in run.names},
                                  math.inf if i == 0 else rng.choice([2e7, 1e8, 1e9, 1e10]),
                                  0.0 if i == 0 else rng.choice([1e-4, 1e-3, 1e-2])))
        t = time.perf_counter()
        exact = best_division(costs, workers, 4)
        exact_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        heur = best_division(costs, workers, 4, method="heuristic")
        heur_s.append(time.perf_counter() - t)
        gaps.append(heur.total_s / exact.total_s - 1)
        if costs.height <= 28 and n <= 4:
            brute = brute_division(costs, workers, 3)
            brute_checked += 1
            brute_agree += math.isclose(best_division(costs, workers, 3).total_s, brute.total_s,
                                        rel_tol=1e-12)
    print(f"{args.cases} cases (runs of vgg16, resnet18, resnet50; 2-6 hosts, speeds 0.25-4x, "
          f"links 20 Mbit/s-10 Gbit/s, up to 4 parts)")
    print(f"exact = brute force on {brute_agree}/{brute_checked} small cases (<= 28 rows, "
          f"<= 4 hosts, <= 3 parts)")
    print(f"heuristic gap to exact: median {statistics.median(gaps):.2%}, "
          f"90th percentile {sorted(gaps)[int(0.9 * len(gaps))]:.2%}, max {max(gaps):.2%}; "
          f"optimal in {sum(g < 1e-12 for g in gaps)}/{len(gaps)}")
    print(f"time per decision: exact median {statistics.median(exact_s) * 1e3:.1f} ms (max "
          f"{max(exact_s) * 1e3:.1f}), heuristic median {statistics.median(heur_s) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
