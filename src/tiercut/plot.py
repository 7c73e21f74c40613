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
