"""Time-stepped handover simulator: one user, a request every ``dt``, a migration policy.

Latency of a request from a user served by cell c whose edge stage lives on server s:
device_s + up_bits/rate_c + [s != c](backhaul_delay + up_bits/backhaul_bps)
+ edge_s/speed_s + down_bits/rate_c + cold_start_s on the first request after a migration
(unless the new server was pre-warmed). A user outside every cell runs everything on the
device (``device_alone_s``) and is counted as "outside"; this is a fallback, not an error.
A migration also costs state_bits/backhaul_bps + backhaul_delay, added to the total cost.
The oracle knows the path and may pre-warm every destination, so it is a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from tiercut.mobility.world import World


@dataclass(frozen=True)
class Workload:
    """Per-request model costs of one device/edge split (seconds and bits)."""
    device_s: float
    up_bits: float
    edge_s: float
    down_bits: float
    device_alone_s: float
    cold_start_s: float
    state_bits: float

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) \
                    or v < 0:
                raise ValueError(f"Workload.{f.name}={v!r}: accepted values are finite "
                                 f"numbers >= 0 (seconds or bits)")


def latency_table(world: World, wl: Workload, xy: np.ndarray) -> tuple:
    """(serving[T], lat[T, S]): latency of each step if the stage lives on each server,
    without cold starts; device_alone_s where the user is outside every cell."""
    rates = world.rates(xy)
    serving = world.nearest(xy)
    T, S = rates.shape
    lat = np.full((T, S), float(wl.device_alone_s))
    inside = serving >= 0
    r = rates[np.arange(T), np.maximum(serving, 0)]
    radio = wl.up_bits / np.where(inside, r, 1.0) + wl.down_bits / np.where(inside, r, 1.0)
    hop = world.backhaul_delay_s + wl.up_bits / world.backhaul_bps
    remote = (np.arange(S)[None, :] != serving[:, None]) * hop
    full = wl.device_s + radio[:, None] + remote + wl.edge_s / world.speeds[None, :]
    lat[inside] = full[inside]
    return serving, lat


def migration_s(world: World, wl: Workload) -> float:
    return wl.state_bits / world.backhaul_bps + world.backhaul_delay_s


def _exit_distance(p, u, c, r) -> float:
    """Distance along unit vector u from p (inside the disc c, r) to the disc's edge."""
    q = p - c
    b = float(q @ u)
    disc = b * b - (float(q @ q) - r * r)
    return max(0.0, -b + np.sqrt(max(disc, 0.0)))


def _run(policy: str, world: World, wl: Workload, xy: np.ndarray, dt: float,
         history: int = 5, horizon_s: float = 10.0) -> dict:
    serving, lat = latency_table(world, wl, xy)
    T = len(xy)
    mig = migration_s(world, wl)
    if policy == "oracle":
        plan = _oracle_plan(lat, mig)
    centers, radii = world.centers, world.radii
    s = -1
    warm = set()
    pending_cold = False
    out = np.empty(T)
    migrations = cold = 0
    for t in range(T):
        c = serving[t]
        if s < 0 and c >= 0:
            s = plan[t] if policy == "oracle" else c  # first placement is free
            warm = {s}
        elif s >= 0 and policy == "oracle" and plan[t] != s:
            s = plan[t]
            migrations += 1  # the oracle pre-warms every destination: no cold start
        elif s >= 0 and c >= 0 and c != s and policy == "nearest":
            s, migrations = c, migrations + 1
            pending_cold = c not in warm
            warm = {c}
        elif s >= 0 and c >= 0 and policy == "aware":
            v = (xy[t] - xy[max(0, t - history)]) / (dt * max(1, min(t, history)))
            speed = float(np.linalg.norm(v))
            if c != s:
                dwell = np.inf if speed < 1e-6 else _exit_distance(
                    xy[t], v / speed, centers[c], radii[c]) / speed
                saving = lat[t, s] - lat[t, c]
                cost = mig + (0.0 if c in warm else wl.cold_start_s)
                if saving > 0 and saving * dwell / dt > cost:
                    pending_cold = c not in warm
                    s, migrations = c, migrations + 1
                    warm = {c}
            if speed > 1e-6:  # heading out soon: pre-warm the predicted next cell
                u = v / speed
                d_out = _exit_distance(xy[t], u, centers[c], radii[c])
                if d_out / speed < horizon_s:
                    nxt = world.nearest(xy[t] + u * (d_out + 1.0))[0]
                    if nxt >= 0:
                        warm = {s, int(nxt)}
        if c < 0 or s < 0:
            out[t] = wl.device_alone_s
            continue
        out[t] = lat[t, s] + (wl.cold_start_s if pending_cold else 0.0)
        cold += pending_cold
        pending_cold = False
    return {"latency": out, "migrations": migrations, "cold_starts": cold,
            "outside": int((serving < 0).sum()),
            "total_s": float(out.sum() + migrations * mig)}


def _oracle_plan(lat: np.ndarray, mig: float) -> np.ndarray:
    """Server per step minimising sum(latency) + mig * migrations (Viterbi over T x S)."""
    T, S = lat.shape
    cost = lat[0].copy()
    back = np.zeros((T, S), dtype=int)
    for t in range(1, T):
        best = int(np.argmin(cost))
        stay = cost
        move = cost[best] + mig
        back[t] = np.where(stay <= move, np.arange(S), best)
        cost = np.minimum(stay, move) + lat[t]
    plan = np.empty(T, dtype=int)
    plan[-1] = int(np.argmin(cost))
    for t in range(T - 1, 0, -1):
        plan[t - 1] = back[t, plan[t]]
    return plan


POLICIES = ("nearest", "never", "aware", "oracle")


def simulate(policy: str, world: World, wl: Workload, xy, dt: float) -> dict:
    """One user run under ``policy``: per-request latencies, migrations, cold starts."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise ValueError(f"path must have shape [T, 2], got {xy.shape}")
    return _run(policy, world, wl, xy, dt)


def compare(world: World, wl: Workload, paths, dt: float, policies=POLICIES) -> dict:
    """Per policy, averaged over runs: mean and p95 latency (s), migrations, cold starts,
    requests outside every cell, total cost (s)."""
    res = {}
    for p in policies:
        runs = [simulate(p, world, wl, xy, dt) for xy in paths]
        res[p] = {"mean_s": float(np.mean([r["latency"].mean() for r in runs])),
                  "p95_s": float(np.mean([np.percentile(r["latency"], 95) for r in runs])),
                  "migrations": float(np.mean([r["migrations"] for r in runs])),
                  "cold_starts": float(np.mean([r["cold_starts"] for r in runs])),
                  "outside": float(np.mean([r["outside"] for r in runs])),
                  "total_s": float(np.mean([r["total_s"] for r in runs]))}
    return res
