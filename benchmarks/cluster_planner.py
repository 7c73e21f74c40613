"""The cluster planner (issue #21): the particle swarm + DP placement against the exhaustive
search, its decision time on 16 nodes and ResNet-50, and the gain of placement over the
placement-blind chain baseline (PipeEdge's DP over the nodes in a fixed order).

Zoo models are profiled once on this machine (1 thread, 3 repeats); each random instance
scales that reference by a random speed per node and draws random links (5 mbit..1 gbit,
0..20 ms), a shared medium in a fifth of them, a latency cap in a fifth (some beyond
reach: both searches must then refuse), memory caps in a fifth. Seeded: the same --seed
gives the same figures, up to the profiles' timings.

Usage: python benchmarks/cluster_planner.py [--instances 200] [--seed 0] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

from tiercut.cluster import (Cluster, ClusterError, ClusterNode, Medium, SwarmSettings,
                             least_memory, plan_cluster)
from tiercut.cluster.pipeline import cost_model
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.planner.scenario import Link
from tiercut.zoo import entry

MODELS = ("resnet18", "mobilenet_v2", "vgg16", "squeezenet1_1", "googlenet", "resnet50")


def profiles(names) -> dict:
    out = {}
    for name in names:
        e = entry(name)
        out[name] = profile_model(e.build(), e.example_inputs(), name=name,
                                  settings=ProfileSettings(threads=1, repeat=3, warmup=1))
    return out


def instance(rng: random.Random, ref, n: int, spread: float = 16.0, extras: bool = True
             ) -> tuple[Cluster, float | None]:
    names = [f"d{i}" for i in range(n)]
    speeds = [spread ** rng.random() / math.sqrt(spread) for _ in names]
    links = {(a, b): Link(5e6 * 200 ** rng.random(), 0.02 * rng.random())
             for i, a in enumerate(names) for b in names[i + 1:]}
    kind = rng.randrange(5) if extras else 0
    medium = Medium(20e6 * 10 ** rng.random()) if kind == 1 else None
    memory = [None] * n
    if kind == 3:
        whole = least_memory(cost_model(Cluster((ClusterNode("x"),), reference=ref)), 1)
        memory = [int(whole * (0.3 + 1.2 * rng.random())) for _ in names]
    nodes = tuple(ClusterNode(a, speed=s, memory_bytes=m)
                  for a, s, m in zip(names, speeds, memory))
    c = Cluster(nodes, links, medium=medium, reference=ref)
    cap = None
    if kind == 2:  # a cap of 1-3x the fastest node's time alone, plus 50 ms to get there
        cap = ref.total_latency_s / max(speeds) * (1 + 2 * rng.random()) + 0.05
    return c, cap


def pct(values, q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--gain-instances", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    refs = profiles(MODELS)
    profile_s = time.perf_counter() - t0

    gaps, exact_s, swarm_s, refused, mismatched = [], [], [], 0, 0
    for i in range(args.instances):
        name = rng.choice(MODELS)
        c, cap = instance(rng, refs[name], rng.randint(3, 6))
        t = time.perf_counter()
        try:
            best = plan_cluster(c, method="exact", latency_cap_s=cap)
        except ClusterError:
            best = None
        exact_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        try:
            found = plan_cluster(c, method="swarm", latency_cap_s=cap, seed=i)
        except ClusterError:
            found = None
        swarm_s.append(time.perf_counter() - t)
        if best is None or found is None:
            refused += 1
            if (best is None) != (found is None):
                mismatched += 1
                print(f"instance {i} ({name}, {len(c.nodes)} nodes, cap {cap}): only "
                      f"{'exact' if best is None else 'swarm'} refused")
            continue
        gaps.append(found.period_s / best.period_s - 1)

    # 16 nodes, ResNet-50: the decision time of the swarm + DP (the chain baseline included)
    # and how far it stays from a search of 12x the placements (exact is out of reach here)
    big_s, big_fps, big_long, big_chain = [], [], [], []
    for k in range(5):
        c, _ = instance(random.Random(1000 + k), refs["resnet50"], 16, extras=False)
        t = time.perf_counter()
        plan = plan_cluster(c, method="swarm", seed=k)
        big_s.append(time.perf_counter() - t)
        big_fps.append(plan.throughput_fps)
        long = plan_cluster(c, method="swarm", seed=k,
                            settings=SwarmSettings(max_placements=30000, kicks=60))
        big_long.append(plan.period_s / long.period_s - 1)
        big_chain.append(plan_cluster(c, method="chain").throughput_fps)

    # heterogeneous clusters, speeds spread 1:8: the full planner over the chain baseline
    gains, gains_exact = [], []
    for k in range(args.gain_instances):
        name = rng.choice(MODELS)
        n = rng.randint(3, 10)
        c, _ = instance(rng, refs[name], n, spread=8.0, extras=False)
        base = plan_cluster(c, method="chain")
        full = plan_cluster(c, method="swarm", seed=k)
        gains.append(base.period_s / full.period_s)
        if n <= 6:
            gains_exact.append(base.period_s / plan_cluster(c, method="exact").period_s)

    report = {
        "instances": args.instances, "compared": len(gaps), "refused_by_both": refused -
        mismatched, "refused_by_one": mismatched,
        "gap_median_pct": 100 * statistics.median(gaps), "gap_p95_pct": 100 * pct(gaps, 0.95),
        "gap_max_pct": 100 * max(gaps),
        "within_3pct_share": sum(g <= 0.03 for g in gaps) / len(gaps),
        "exact_s_median": statistics.median(exact_s), "exact_s_max": max(exact_s),
        "swarm_s_median": statistics.median(swarm_s), "swarm_s_max": max(swarm_s),
        "n16_resnet50_decision_s": big_s, "n16_resnet50_fps": big_fps,
        "n16_gap_to_long_search_pct": [100 * g for g in big_long],
        "n16_chain_fps": big_chain,
        "gain_over_chain_median": statistics.median(gains), "gain_over_chain_worst": min(gains),
        "gain_over_chain_max": max(gains),
        "gain_exact_over_chain_median": statistics.median(gains_exact) if gains_exact else None,
        "profile_s": profile_s, "total_s": time.perf_counter() - t0,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"profiled {', '.join(MODELS)} in {profile_s:.1f} s")
    print(f"swarm+DP vs exact, {report['compared']} of {args.instances} random instances "
          f"(3-6 nodes; {report['refused_by_both']} refused by both as infeasible, "
          f"{mismatched} by one only):")
    print(f"  gap median {report['gap_median_pct']:.2f} %, p95 {report['gap_p95_pct']:.2f} %, "
          f"max {report['gap_max_pct']:.2f} %, within 3 %: "
          f"{100 * report['within_3pct_share']:.1f} % (goal >= 95 %)")
    print(f"  time exact median {1e3 * report['exact_s_median']:.1f} ms (max "
          f"{report['exact_s_max']:.2f} s), swarm median {1e3 * report['swarm_s_median']:.1f} "
          f"ms (max {report['swarm_s_max']:.2f} s)")
    print(f"16 nodes, ResNet-50 (5 clusters): swarm+DP decision "
          f"{', '.join(f'{s:.2f}' for s in big_s)} s (goal <= 1 s); "
          f"{', '.join(f'{f:.1f}' for f in big_fps)} frames/s (chain baseline "
          f"{', '.join(f'{f:.1f}' for f in big_chain)}); gap to a search of 12x the "
          f"placements "
          f"{', '.join(f'{100 * g:.1f}' for g in big_long)} %")
    print(f"gain over the chain baseline, {len(gains)} clusters of 3-10 nodes, speeds 1:8: "
          f"median {report['gain_over_chain_median']:.2f}x, worst "
          f"{report['gain_over_chain_worst']:.2f}x, best {report['gain_over_chain_max']:.2f}x"
          + (f"; exact (<= 6 nodes) median {report['gain_exact_over_chain_median']:.2f}x"
             if gains_exact else ""))
    print(f"total {report['total_s']:.0f} s")


if __name__ == "__main__":
    main()
