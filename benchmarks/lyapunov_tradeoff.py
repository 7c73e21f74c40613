"""The Lyapunov policy's energy-delay trade-off over V (CutEdge): device energy per request
approaches the least energy that keeps the device's queue stable as O(1/V), while the queue
(and so the latency) grows as O(V).

Setting: the planner tests' hand-written 3-tier scenario, device 2 W compute / 1 W radio, a
constant 10 Mbit/s device link, a request every PERIOD seconds. The policy picks, per request,
a plan, a device speed (0.4, 0.7, 1.0: energy ~ speed²) and a sending rate (0.25, 0.5, 1 of the
link). The option that spends least energy keeps the device busy longer than PERIOD, so it
alone would let the queue grow without bound: that is what makes the trade-off real (with a
stable cheapest option, a large V just picks it and the queue stays bounded).

The reference E* is the least mean energy of any mix of options that keeps every resource
stable: a linear program over the options' shares, with one row per resource (the device's
compute, its link up and down, the servers) saying its mean busy seconds per request are at
most PERIOD. The policy itself sees one backlog, the device's compute and link queues added up
(what a request arriving now waits behind), and charges each option its device seconds. Each V
runs ARRIVALS requests; the figures are averages over the second half (the queue of a large V
takes a while to build). The log-log slopes are fitted where the gap is clear of the finite
run (gap > 1% of E*) and the queue is clear of its floor (latency > 3x the smallest); the
theory says -1 for the gap and +1 for the latency.

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
from tiercut.adapt.costs import CPU, TRACE_LINK  # noqa: E402
from tiercut.sim.run import prepare  # noqa: E402
from tiercut.sim.simulator import Arrivals  # noqa: E402

BANDWIDTH = 10e6
PERIOD = 0.9  # seconds between requests
ARRIVALS = 8000
VS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def stable_minimum(policy: LyapunovPolicy, bandwidth: float, period: float) -> float:
    """Least mean energy per request over mixes of the policy's options (plan, speed, sending
    fraction) whose mean busy time on every resource is at most ``period`` (scipy's linprog)."""
    from scipy.optimize import linprog

    energies, usages = [], []
    for energy, _, o in policy.options(bandwidth):
        use: dict[str, float] = {}
        for j, (kind, name, seconds, bits, held) in enumerate(policy.costs(o.plan).steps):
            if kind == CPU:  # step 0 is the device's compute, slowed by the speed setting
                busy = seconds / o.speed if j == 0 else seconds
            else:
                busy = bits / (o.fraction * bandwidth) if kind == TRACE_LINK else held
            use[name] = use.get(name, 0.0) + busy
        energies.append(energy)
        usages.append(use)
    names = sorted({n for u in usages for n in u})
    rows = [[u.get(n, 0.0) for u in usages] for n in names]
    best = linprog(energies, A_ub=rows, b_ub=[period] * len(names),
                   A_eq=[[1.0] * len(energies)], b_eq=[1.0], bounds=(0, None))
    if not best.success:
        raise SystemExit(f"no mix of options is stable at one request per {period} s")
    return float(best.fun)


def slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0]) if len(xs) >= 2 else float("nan")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/lyapunov_tradeoff.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    sc = three_tiers(0)
    wide = prepare(sc, BandwidthTrace((0.0, 1.0), (0.5e6, 200e6)))  # every plan of the table
    plans = candidates(wide.setting.table)
    setup = prepare(sc, BandwidthTrace((0.0,), (BANDWIDTH,)))
    policy = LyapunovPolicy(sc, plans, 1.0, BANDWIDTH)
    options = [(e, b) for e, b, _ in policy.options(BANDWIDTH)]
    e_star = stable_minimum(policy, BANDWIDTH, PERIOD)
    cheapest = min(options)
    print(f"{len(options)} options; the cheapest spends {cheapest[0] * 1e3:.1f} mJ in "
          f"{cheapest[1]:.2f} s of device compute and link time; one request per {PERIOD} s; "
          f"the least mean energy of a stable mix E* = {e_star * 1e3:.2f} mJ/request")
    rows = []
    half = ARRIVALS // 2
    for V in VS:
        pol = LyapunovPolicy(sc, plans, V, BANDWIDTH)
        r = setup.simulator.run(pol, Arrivals("periodic", 1 / PERIOD), ARRIVALS * PERIOD)
        energy, latency = r.energy_j[half:].mean(), r.latency_s[half:].mean()
        rows.append((V, energy, energy - e_star, latency))
    print(f"{'V':>7s} {'mJ/req':>8s} {'gap mJ':>8s} {'gap*V':>8s} {'mean ms':>9s} {'ms/V':>10s}")
    for V, e, gap, lat in rows:
        print(f"{V:7g} {e * 1e3:8.2f} {gap * 1e3:8.3f} {gap * V * 1e3:8.4f} {lat * 1e3:9.1f} "
              f"{lat * 1e3 / V:10.1f}")
    floor = min(r[3] for r in rows)
    gap_fit = [(V, gap) for V, _, gap, _ in rows if gap > 0.01 * e_star]
    lat_fit = [(V, lat) for V, _, _, lat in rows if lat > 3 * floor]
    print(f"log-log slope of the energy gap over V = {gap_fit[0][0]:g}..{gap_fit[-1][0]:g}: "
          f"{slope(*zip(*gap_fit)):.2f} (O(1/V): -1)" if gap_fit else "no clear energy gap")
    print(f"log-log slope of the mean latency over V = {lat_fit[0][0]:g}..{lat_fit[-1][0]:g}: "
          f"{slope(*zip(*lat_fit)):.2f} (O(V): +1)" if lat_fit else "no queue growth")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    Vs = np.array([r[0] for r in rows])
    # below a microjoule the gap is the finite run's own noise (it can dip below E*): floored
    ax[0].loglog(Vs, [max(r[2] * 1e3, 1e-3) for r in rows], "o-",
                 label="energy above E* (floored at 0.001)")
    if gap_fit:
        ax[0].loglog(Vs, gap_fit[0][1] * 1e3 * gap_fit[0][0] / Vs, "--", label="1/V")
    ax[0].set_xlabel("V")
    ax[0].set_ylabel("mJ per request above E*")
    ax[0].legend()
    ax[1].loglog(Vs, [r[3] * 1e3 for r in rows], "o-", label="mean latency")
    if lat_fit:
        ax[1].loglog(Vs, lat_fit[-1][1] * 1e3 * Vs / lat_fit[-1][0], "--", label="V")
    ax[1].set_xlabel("V")
    ax[1].set_ylabel("mean latency incl. queueing (ms)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
