"""Figures of a profile: per-node latency and output size along the topological order."""
from __future__ import annotations

from pathlib import Path

from .profile import Profile


def plot_profile(profile: Profile, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no screen is assumed
    import matplotlib.pyplot as plt

    xs = range(len(profile.nodes))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.bar(xs, [n.latency_s * 1e3 for n in profile.nodes], width=1.0, color="tab:blue")
    top.set_ylabel("latency (ms)")
    top.set_title(f"{profile.model} on {profile.host.get('name', '?')}"
                  f"{' (predicted)' if profile.predicted else ''}: "
                  f"Σ nodes {profile.total_latency_s * 1e3:.1f} ms")
    bottom.bar(xs, [n.output_bytes / 1024 for n in profile.nodes], width=1.0, color="tab:orange")
    bottom.axhline(profile.input_bytes / 1024, color="k", linestyle="--", linewidth=0.8,
                   label="model input")
    bottom.set_yscale("log")
    bottom.set_ylabel("output (KiB)")
    bottom.set_xlabel("node (topological order)")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(bandwidths, best_s, baselines: dict, breakpoints, title: str, path,
               best_label: str = "best plan (decision table)") -> None:
    """Predicted latency against the device link's bandwidth, with the one-tier baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    mbit = [b / 1e6 for b in bandwidths]
    ax.plot(mbit, [s * 1e3 for s in best_s], label=best_label, linewidth=2.2)
    for name, seconds in baselines.items():
        ax.plot(mbit, [s * 1e3 for s in seconds], linestyle="--", label=name)
    for b in breakpoints:
        ax.axvline(b / 1e6, color="grey", linewidth=0.6, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("device link bandwidth (Mbit/s)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
