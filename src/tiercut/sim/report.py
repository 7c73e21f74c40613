"""The simulator's results: a table, JSON, CSV, and plots (latency CDF per policy; a timeline of
bandwidth, chosen cut and latency)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .simulator import RunResult
from .timeline import Timeline

COLUMNS = ("policy", "requests", "mean_s", "p50_s", "p95_s", "p99_s", "deadline_misses",
           "energy_j_per_request", "switches", "plans_used", "hedged", "local_wins",
           "sim_requests_per_s")


def rows(results: Sequence[RunResult]) -> list[dict]:
    return [r.summary() for r in results]


def table(results: Sequence[RunResult]) -> str:
    head = ("policy", "requests", "mean ms", "p50 ms", "p95 ms", "p99 ms", "misses", "mJ/req",
            "switches", "sim req/s")
    lines = [head]
    for s in rows(results):
        misses = "-" if s["deadline_misses"] is None else str(s["deadline_misses"])
        lines.append((s["policy"], str(s["requests"]), *(f"{s[k] * 1e3:.1f}" for k in
                      ("mean_s", "p50_s", "p95_s", "p99_s")), misses,
                      f"{s['energy_j_per_request'] * 1e3:.1f}", str(s["switches"]),
                      f"{s['sim_requests_per_s']:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
           for line in lines]
    for s in rows(results):
        if s["hedged"]:
            out.append(f"note ({s['policy']}): {s['hedged']} requests raced against the device, "
                       f"which answered {s['local_wins']} of them first")
        out += [f"note ({s['policy']}): {n}" for n in s["notes"]]
    return "\n".join(out)


def write_json(results: Sequence[RunResult], path: str | Path, meta: dict | None = None) -> None:
    Path(path).write_text(json.dumps({"meta": meta or {}, "policies": rows(results)}, indent=2))


def write_csv(results: Sequence[RunResult], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for s in rows(results):
            w.writerow(s)


def plot(results: Sequence[RunResult], timeline: Timeline, prefix: str | Path) -> list[Path]:
    """Write PREFIX-cdf.png and PREFIX-timeline.png; return their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cdf = prefix.with_name(prefix.name + "-cdf.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        lat = np.sort(r.latency_s) * 1e3
        ax.plot(lat, np.arange(1, len(lat) + 1) / max(len(lat), 1), label=r.policy)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(cdf, dpi=110)
    plt.close(fig)

    line = prefix.with_name(prefix.name + "-timeline.png")
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    end = max((float(r.arrivals[-1]) for r in results if len(r.arrivals)), default=1.0)
    ts = np.linspace(0, end, 2000)
    axes[0].step(ts, [timeline.rate_at(t) / 1e6 for t in ts], where="post")
    axes[0].set_ylabel("bandwidth (Mbit/s)")
    for r in results:
        axes[1].step(r.arrivals, r.plan_index, where="post", label=r.policy)
        axes[2].plot(r.arrivals, r.latency_s * 1e3, ".", markersize=1.5, label=r.policy)
    axes[1].set_ylabel("cut (plan #)")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("time (s)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(line, dpi=110)
    plt.close(fig)
    return [cdf, line]
