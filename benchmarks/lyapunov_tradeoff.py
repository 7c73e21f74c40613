"""The Lyapunov policy's energy-delay trade-off over V (CutEdge): device energy per request
approaches its minimum as O(1/V) while the device's queue (and latency) grows as O(V).

Hand-written 3-tier scenario (the planner tests' random DAG), device 2 W compute / 1 W radio,
constant 4 Mbit/s device link, periodic arrivals at 1/s for 600 s. Prints a table and writes
lyapunov_tradeoff.png (or the path given).

    .venv/bin/python benchmarks/lyapunov_tradeoff.py [out.png]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_planner import three_tiers  # noqa: E402

from tiercut.adapt.policies import LyapunovPolicy, candidates  # noqa: E402
from tiercut.link.traces import BandwidthTrace  # noqa: E402
from tiercut.sim.run import prepare  # noqa: E402
from tiercut.sim.simulator import Arrivals  # noqa: E402


RATE = 1.0


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("lyapunov_tradeoff.png")
    sc = three_tiers(0)
    setup = prepare(sc, BandwidthTrace((0.0,), (4e6,)))
    plans = candidates(setup.setting.table)
    # the least energy any option can reach, per request (the V -> infinity limit)
    probe = LyapunovPolicy(sc, plans, 1.0, 4e6)
    e_min = min(e for e, _, _ in probe.options(4e6))
    arrivals = Arrivals("periodic", RATE)
    rows = []
    for V in (0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300):
        pol = LyapunovPolicy(sc, plans, V, 4e6)
        r = setup.simulator.run(pol, arrivals, 600.0)
        # the device's backlog seen by each request = latency beyond its own service
        s = r.summary()
        rows.append((V, s["energy_j_per_request"], s["energy_j_per_request"] - e_min, s["mean_s"]))
    print(f"minimum energy per request {e_min * 1e3:.2f} mJ")
    print(f"{'V':>7s} {'mJ/req':>8s} {'gap mJ':>8s} {'gap*V':>8s} {'mean ms':>9s} {'ms/V':>9s}")
    for V, e, gap, lat in rows:
        print(f"{V:7g} {e * 1e3:8.2f} {gap * 1e3:8.3f} {gap * V * 1e3:8.3f} {lat * 1e3:9.1f} "
              f"{lat * 1e3 / V:9.2f}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    Vs = np.array([r[0] for r in rows])
    ax[0].loglog(Vs, [max(r[2], 1e-9) * 1e3 for r in rows], "o-", label="energy gap")
    ax[0].loglog(Vs, rows[0][2] * 1e3 * Vs[0] / Vs, "--", label="1/V")
    ax[0].set_xlabel("V")
    ax[0].set_ylabel("energy above the minimum (mJ/request)")
    ax[0].legend()
    ax[1].loglog(Vs, [r[3] * 1e3 for r in rows], "o-", label="mean latency")
    ax[1].loglog(Vs, rows[-1][3] * 1e3 * Vs / Vs[-1], "--", label="V")
    ax[1].set_xlabel("V")
    ax[1].set_ylabel("mean latency incl. queueing (ms)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
