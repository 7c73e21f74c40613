"""Exactness of the planner against independent references.

- 1,000 random DAGs (2 and 3 tiers, with and without constraints): the planner's optimum against
  brute force over every labelling of every route.
- Every zoo model (device 10x slower and cloud 5x faster than this host, by speed factor):
  brute force cannot enumerate hundreds of nodes, so the reference is the exact integer program
  (a different method from the min-cut the planner picks), with and without constraints.
Both to 1e-9 relative. Also checks the plan is never predicted slower than all-device or
all-cloud. Usage: python benchmarks/planner_exact.py [--dags N] [--models a,b]
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from planner_common import measured, scenario  # noqa: E402

from tiercut import zoo  # noqa: E402
from tiercut.planner import Constraints, Host, InfeasibleError, Scenario, baseline, parse_link, plan  # noqa: E402
from tiercut.planner import brute  # noqa: E402
from tiercut.planner.build import build, routes  # noqa: E402
from tiercut.planner.problem import INF  # noqa: E402
from tiercut.measure.profile import NodeProfile, Profile  # noqa: E402


def random_scenario(rng: random.Random, tiers: int) -> Scenario:
    n = rng.randint(3, 8)
    layout = []
    for i in range(n):
        k = rng.randint(1, min(2, i)) if i else 0
        layout.append((tuple(sorted({f"n{rng.randrange(i)}" for _ in range(k)})), rng.randint(100, 500_000)))
    def prof(host: str, speed: float) -> Profile:
        nodes = tuple(NodeProfile(f"n{i}", ins, (0.0005 + rng.random() * 0.02) / speed, size)
                      for i, (ins, size) in enumerate(layout))
        return Profile(model="dag", host={"name": host}, input_bytes=rng.randint(1000, 600_000),
                       outputs=(f"n{n - 1}",), nodes=nodes)
    names = ("device", "edge", "cloud")[:tiers]
    speeds = {"device": 0.1, "edge": 1.0, "cloud": 5.0}
    hosts = [Host(t, t, prof(t, speeds[t] * rng.uniform(0.5, 2))) for t in names]
    if tiers == 3 and rng.random() < 0.5:
        hosts.append(Host("edge2", "edge", prof("edge2", rng.uniform(0.5, 3)), load=rng.uniform(1, 3)))
    rate = lambda: f"{rng.choice([1, 5, 20, 100, 1000])}mbit,{rng.choice([1, 10, 40])}ms"  # noqa: E731
    links = {("device", "edge"): parse_link(rate()), ("edge", "cloud"): parse_link(rate()),
             ("device", "cloud"): parse_link(rate())}
    return Scenario(names, tuple(hosts), {k: v for k, v in links.items() if set(k) <= set(names)})


def random_constraints(rng: random.Random, sc: Scenario) -> Constraints:
    nodes = [n.name for n in sc.hosts[0].profile.nodes]
    tiers = sc.tiers
    c = {}
    if rng.random() < 0.5:
        c["pin"] = {rng.choice(nodes): rng.choice(tiers)}
    if rng.random() < 0.5:
        c["forbid"] = ((rng.choice(nodes), rng.choice(tiers)),)
    if len(tiers) > 1 and rng.random() < 0.4:
        c["use_tiers"] = (rng.choice(tiers[1:]),)
    if len(tiers) > 1 and rng.random() < 0.4:
        c["max_bytes"] = {f"{tiers[0]}-{tiers[1]}": rng.choice([50_000, 200_000, 1_000_000])}
    return Constraints(**c)


def brute_best(sc: Scenario, c: Constraints) -> float:
    return min((brute.solve(*build(sc, route, "latency", c))[0] for route in routes(sc, c)),
               default=INF)


def agree(a: float, b: float) -> bool:
    return (a == b == INF) or math.isclose(a, b, rel_tol=1e-9)


def dags(count: int) -> None:
    rng = random.Random(2026)
    failures = {}
    counts = {}
    for i in range(count):
        tiers = 2 + i % 2
        constrained = (i // 2) % 2 == 1
        sc = random_scenario(rng, tiers)
        c = random_constraints(rng, sc) if constrained else Constraints()
        try:
            got = plan(sc, constraints=c).value
        except InfeasibleError:
            got = INF
        key = (tiers, constrained)
        counts[key] = counts.get(key, 0) + 1
        if not agree(got, brute_best(sc, c)):
            failures[key] = failures.get(key, 0) + 1
    print(f"random DAGs: {count} scenarios")
    for key in sorted(counts):
        print(f"  {key[0]} tiers, {'with' if key[1] else 'without'} constraints: "
              f"{counts[key] - failures.get(key, 0)}/{counts[key]} equal to brute force")


def models(names: list[str]) -> None:
    print(f"{'model':<16}{'tiers':>6}{'constraints':>13}{'planner ms':>12}{'milp ms':>10}"
          f"  method   equal  <= baselines")
    for name in names:
        prof = measured(name, repeat=2)
        for tiers in (("device", "edge"), ("device", "edge", "cloud")):
            sc = scenario(prof, tiers)
            first = prof.nodes[0].name
            last = prof.nodes[-1].name
            for c in (Constraints(), Constraints(pin={first: "device"}, forbid=((last, "edge"),))):
                p = plan(sc, constraints=c)
                ref = plan(sc, constraints=c, method="milp")
                # a pinned node may force a plan worse than a one-tier baseline it forbids
                ok_base = ("yes" if all(p.total_s <= baseline(sc, t).total_s * (1 + 1e-12)
                                        for t in (tiers[0], tiers[-1])) else "NO") \
                    if not c.pin else "n/a"
                print(f"{name:<16}{len(tiers):>6}{'yes' if c.pin else 'no':>13}"
                      f"{p.total_s * 1e3:>12.3f}{ref.total_s * 1e3:>10.3f}  {p.method:<8} "
                      f"{'yes' if agree(p.value, ref.value) else 'NO':<6} {ok_base}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dags", type=int, default=1000)
    ap.add_argument("--models", default=",".join(zoo.names()))
    args = ap.parse_args()
    dags(args.dags)
    if args.models:
        models(args.models.split(","))


if __name__ == "__main__":
    main()
