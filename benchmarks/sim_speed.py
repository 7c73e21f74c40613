"""Simulated requests per second per policy (issue 5 asks >= 100,000).

A hand-written 3-tier scenario (the planner tests' random DAG), a Norway trace, Poisson
arrivals at 50/s for 2000 s (about 100,000 requests per policy); the table is built once
beforehand and not timed.

    .venv/bin/python benchmarks/sim_speed.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_planner import three_tiers  # noqa: E402

from tiercut.link.traces import BandwidthTrace, load_trace  # noqa: E402
from tiercut.sim.run import prepare, run_policies  # noqa: E402
from tiercut.sim.simulator import Arrivals  # noqa: E402

TRACE = (Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve-cooked" / "src"
         / "cooked_test_traces" / "norway_bus_1")


def main() -> None:
    sc = three_tiers(0)
    tr = load_trace(TRACE).scaled(4.0)  # scaled so that the cut moves along the trace
    load = BandwidthTrace((0.0, 10.0), (1.0, 4.0))
    setup = prepare(sc, tr, load, "edge", fps=1.0)
    names = ["static", "adaptive", "hedged", "loadaware", "dads", "lyapunov", "oracle"]
    print(f"{'policy':10s} {'requests':>9s} {'sim req/s':>10s} {'switches':>8s}")
    for r in run_policies(setup, names, Arrivals("poisson", 50.0), 2000.0):
        s = r.summary()
        print(f"{s['policy']:10s} {s['requests']:9d} {s['sim_requests_per_s']:10.0f} {s['switches']:8d}")


if __name__ == "__main__":
    main()
