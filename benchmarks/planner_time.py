"""Decision time of the planner, median over repeats, on this machine.

Goals: 2-tier DenseNet-121 <= 5 ms; 3-tier DenseNet-121 <= 20 ms; a Scission-sized query (a
25-block chain, two candidate hosts for edge and two for cloud, pins and a required tier)
<= 2 ms; a decision-table lookup <= 20 us. Usage: python benchmarks/planner_time.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from planner_common import measured, scenario  # noqa: E402

from tiercut.planner import Constraints, plan  # noqa: E402
from tiercut.planner.table import build_table  # noqa: E402
from tiercut.measure.profile import NodeProfile, Profile  # noqa: E402


def median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chain_profile(blocks: int = 25) -> Profile:
    nodes = tuple(NodeProfile(f"block{i}", (f"block{i - 1}",) if i else (),
                              latency_s=0.004 * (1 + i % 4), output_bytes=int(800_000 / (1 + i)))
                  for i in range(blocks))
    return Profile(model=f"chain{blocks}", host={"name": "here"}, input_bytes=602_112,
                   outputs=(nodes[-1].name,), nodes=nodes)


def main() -> None:
    dense = measured("densenet121", repeat=3)
    two, three = scenario(dense, ("device", "edge")), scenario(dense)
    rows = []
    for label, sc, goal in (("2-tier densenet121", two, 5e-3), ("3-tier densenet121", three, 20e-3)):
        p = plan(sc)
        rows.append((label, median_seconds(lambda: plan(sc), 21), goal, p.method))
    chain = scenario(chain_profile(), extra_hosts=1)
    c = Constraints(pin={"block0": "device", "block24": "cloud"}, use_tiers=("edge",))
    p = plan(chain, constraints=c)
    rows.append(("scission-sized chain", median_seconds(lambda: plan(chain, constraints=c), 51),
                 2e-3, p.method))
    table = build_table(three)
    lookups = 20000
    t0 = time.perf_counter()
    for i in range(lookups):
        table.best(1e6 + i * 50.0)
    rows.append(("decision-table lookup", (time.perf_counter() - t0) / lookups, 20e-6,
                 f"{len(table.entries)} plans"))
    loaded = build_table(three, load_tier="edge", load_range=(0.5, 8.0))
    t0 = time.perf_counter()
    for i in range(lookups):
        loaded.best(1e6 + i * 50.0, 0.5 + (i % 64) / 8)
    rows.append(("lookup with edge load", (time.perf_counter() - t0) / lookups, 20e-6,
                 f"{len(loaded.entries)} plans"))
    t0 = time.perf_counter()
    plan(three, "throughput")
    rows.append(("3-tier throughput (once)", time.perf_counter() - t0, 10.0, "milp"))
    print(f"{'query':<24}{'median':>12}{'goal':>10}  method")
    for label, seconds, goal, method in rows:
        unit, scale = ("us", 1e6) if goal < 1e-3 else ("ms", 1e3)
        print(f"{label:<24}{seconds * scale:>9.3f} {unit}{goal * scale:>7.0f} {unit}  {method}"
              f"{'' if seconds <= goal else '  (above goal)'}")


if __name__ == "__main__":
    main()
