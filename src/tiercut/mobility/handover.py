"""Time-stepped handover simulator: one user, a request every ``dt``, a migration policy.

Latency of a request from a user served by cell c whose edge stage lives on server s, for one
split (a :class:`Workload`), with h = hops(c, s) backhaul hops between them:
device_s + fixed_s + (up_bits + down_bits)/rate_c + [h > 0](backhaul(up_bits, h) +
backhaul(down_bits, h)) + edge_s/speed_s (``World.backhaul_s``: h per-hop delays, and the
transfer), plus cold_start_s on the first request after a migration or a re-placement (unless
the new server was warm). Given several splits (a tuple of Workloads, e.g. from
:func:`tiercut.mobility.cuts.workloads_from_table`), each request takes the cheapest at its
rate and server, and never more than device_alone_s (the device can always run it alone). The
stage on a server holds the edge part of every split, so a migration moves, and a cold start
loads, the largest: state_bits and cold_start_s are the maximum over the splits.

A user outside every cell runs everything on the device (``device_alone_s``) and is counted as
"outside"; this is a fallback, not an error. A migration from a to b costs
backhaul(state_bits, hops(a, b)), added to the total cost, and then a cold start; to a warm b
(the aware policy pre-warms one server: it copies the state there when it starts warming it,
at the same backhaul cost, added to the total) it costs the hops' delays alone.

Outages (``outages={server: [(t0, t1), ...]}``, each server down for t0 <= t < t1): the radio
cell stays up, only the edge server is down. Policies see which servers are down now and never
pick one, but not the future: a migration whose destination goes down while the state is in
flight (within the migration's seconds) is "aborted", paid for, and the stage stays where it
was. A stage whose server was down at any time since the previous request is "lost": that
request runs on the device (device_alone_s), and the next is placed again on an up server
(the serving cell's, else the cheapest) with a cold start. No request is lost.

Policies: "nearest" moves the stage to the serving cell's server at every cell change,
"nearest-warm" does too and pre-warms as "aware" does (so that the two can be told apart),
"never" leaves it where it was first placed, "aware" follows ``policies.AwareRule``.

The oracle knows the path and the outages and may pre-warm every destination, so it is a lower
bound (Viterbi over servers and "on the device").
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from tiercut.mobility.policies import AwareRule
from tiercut.mobility.world import World


@dataclass(frozen=True)
class Workload:
    """Per-request model costs of one device/edge split (seconds and bits). ``fixed_s``: the
    part of a request's latency that depends on neither rate nor server (link latency, codec
    time), 0 unless the split came from a planner's table."""
    device_s: float
    up_bits: float
    edge_s: float
    down_bits: float
    device_alone_s: float
    cold_start_s: float
    state_bits: float
    fixed_s: float = 0.0
    name: str = ""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "name":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) \
                    or v < 0:
                raise ValueError(f"Workload.{f.name}={v!r}: accepted values are finite "
                                 f"numbers >= 0 (seconds or bits)")

    @property
    def uses_edge(self) -> bool:
        return self.edge_s > 0 or self.up_bits > 0 or self.down_bits > 0


def options(wl) -> tuple:
    """The Workload options of ``wl`` (one Workload or a non-empty sequence of them)."""
    opts = (wl,) if isinstance(wl, Workload) else tuple(wl)
    if not opts or not all(isinstance(o, Workload) for o in opts):
        raise ValueError(f"workload must be a Workload or a non-empty tuple of Workloads, "
                         f"got {wl!r}")
    return opts


def _shared(wl) -> tuple:
    """(device_alone_s, cold_start_s, state_bits) shared by every option."""
    opts = options(wl)
    return (min(o.device_alone_s for o in opts), max(o.cold_start_s for o in opts),
            max(o.state_bits for o in opts))


def latency_table(world: World, wl, xy: np.ndarray, dt: float = 1.0) -> tuple:
    """(serving[T], lat[T, S]): latency of each step if the stage lives on each server, the
    cheapest option, without cold starts; device_alone_s where the user is outside every
    cell. ``dt`` gives the step times for a world whose rates come from cell traces."""
    xy = np.atleast_2d(np.asarray(xy, dtype=float))
    T = len(xy)
    rates = world.rates(xy, np.arange(T) * dt)
    serving = world.nearest(xy)
    S = rates.shape[1]
    alone, _, _ = _shared(wl)
    inside = serving >= 0
    r = np.where(inside, rates[np.arange(T), np.maximum(serving, 0)], 0.0)
    hops = world.hop_matrix[np.maximum(serving, 0)]  # [T, S]
    best = np.full((T, S), float(alone))
    with np.errstate(divide="ignore"):
        inv_r = np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), np.inf)
    for o in options(wl):
        radio = (o.up_bits + o.down_bits) * inv_r if o.uses_edge else np.zeros(T)
        radio = np.nan_to_num(radio, nan=0.0, posinf=np.inf)
        if o.uses_edge:
            remote = np.where(hops > 0, world.backhaul_s(o.up_bits, hops)
                              + world.backhaul_s(o.down_bits, hops), 0.0)
            full = o.device_s + o.fixed_s + radio[:, None] + remote \
                + o.edge_s / world.speeds[None, :]
        else:
            full = np.full((T, S), o.device_s + o.fixed_s)
        best = np.minimum(best, full)
    return serving, np.where(inside[:, None], best, float(alone))


def migration_matrix(world: World, wl) -> np.ndarray:
    """[S, S] seconds to move the stage's state between each two servers."""
    return world.backhaul_s(_shared(wl)[2], world.hop_matrix)


def migration_s(world: World, wl) -> float:
    """Seconds to move the stage's state over one backhaul hop."""
    return float(world.backhaul_s(_shared(wl)[2], 1))


def _outage_masks(outages, S: int, T: int, dt: float) -> tuple:
    """(down_now[T, S]: down at the step's time; lost[T, S]: down at any time since the
    previous step's time, the step's own included), and the intervals per server."""
    times = np.arange(T) * dt
    down_now = np.zeros((T, S), dtype=bool)
    lost = np.zeros((T, S), dtype=bool)
    spans = {}
    for s, ivs in (outages or {}).items():
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < S:
            raise ValueError(f"outages: server {s!r} is not an index 0..{S - 1}")
        spans[int(s)] = []
        for iv in ivs:
            try:
                t0, t1 = (float(v) for v in iv)
            except (TypeError, ValueError):
                raise ValueError(f"outages[{s}]: {iv!r} is not a (t0, t1) pair") from None
            if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
                raise ValueError(f"outages[{s}]: ({t0}, {t1}) needs finite t0 < t1 seconds")
            spans[int(s)].append((t0, t1))
            down_now[:, s] |= (t0 <= times) & (times < t1)
            lost[:, s] |= (t0 <= times) & (t1 > times - dt)
    return down_now, lost, spans


def _down_during(spans, s: int, a: float, b: float) -> bool:
    return any(t0 <= b and t1 > a for t0, t1 in spans.get(s, ()))


def _run(policy: str, world: World, wl, xy: np.ndarray, dt: float, outages=None,
         rule: AwareRule | None = None) -> dict:
    serving, lat = latency_table(world, wl, xy, dt)
    alone, cold_s, _ = _shared(wl)
    T, S = lat.shape
    mig = migration_matrix(world, wl)
    down_now, lost_mask, spans = _outage_masks(outages, S, T, dt)
    if policy == "oracle":
        plan = _oracle_plan(np.where(lost_mask, np.inf, lat), alone, mig)
    warming = policy in ("aware", "nearest-warm")
    aware = (rule or AwareRule()).start(world, lat, mig, cold_s, xy, dt) if warming else None
    s, placed = -1, False
    warm: set = set()
    pending_cold = False
    out = np.empty(T)
    migrations = cold = aborted = lost = prewarms = 0
    signal = world.backhaul_s(0.0, world.hop_matrix)
    mig_total = 0.0
    for t in range(T):
        c = serving[t]
        if policy == "oracle":
            if plan[t] != s and s >= 0 and plan[t] < S:
                migrations, mig_total = migrations + 1, mig_total + mig[s, plan[t]]
            s = plan[t] if plan[t] < S else -1  # pre-warmed everywhere: no cold start
        elif s >= 0 and lost_mask[t, s]:
            s, lost = -1, lost + 1
            warm = {w for w in warm if not down_now[t, w]}
            out[t] = alone
            continue
        elif s < 0 and c >= 0:
            up = ~down_now[t]
            if up.any():
                b = c if up[c] else int(np.argmin(np.where(up, lat[t], np.inf)))
                pending_cold = placed and b not in warm
                s, placed, warm = b, True, {b}
        elif s >= 0 and c >= 0:
            if policy == "nearest":
                b = c
            elif policy == "nearest-warm":  # follow the user, pre-warming as aware does
                _, pre = aware.step(t, s, warm, down_now[t])
                b = c
            elif policy == "aware":
                b, pre = aware.step(t, s, warm, down_now[t])
            else:
                b = s
            if b != s and not down_now[t, b]:
                cost = signal[s, b] if b in warm else mig[s, b]  # warm: the state is there
                migrations, mig_total = migrations + 1, mig_total + cost
                if _down_during(spans, b, t * dt, t * dt + cost):
                    aborted += 1
                else:
                    pending_cold = b not in warm
                    s, warm = b, {b}
            if warming:  # the stage's server and at most one pre-warmed, kept
                extra = {w for w in (pre or warm - {s}) if not down_now[t, w]}
                for w in extra - warm:  # pre-warming copies the state there now
                    prewarms, mig_total = prewarms + 1, mig_total + mig[s, w]
                warm = extra | {s}
        if c < 0 or s < 0:
            out[t] = alone
            continue
        out[t] = lat[t, s] + (cold_s if pending_cold else 0.0)
        cold += pending_cold
        pending_cold = False
    return {"latency": out, "migrations": migrations, "cold_starts": cold,
            "aborted": aborted, "lost": lost, "prewarms": prewarms, "outside": int((serving < 0).sum()),
            "migration_s": float(mig_total), "total_s": float(out.sum() + mig_total)}


def _oracle_plan(lat: np.ndarray, alone: float, mig: np.ndarray) -> np.ndarray:
    """Per step, a server (or S: on the device) minimising sum(latency) + migration costs
    (Viterbi over T x (S + 1)). "On the device" is open only at steps where every server is
    down (``lat`` inf); leaving or joining it there costs nothing (pre-warmed)."""
    T, S = lat.shape
    device = np.where(np.isinf(lat).all(axis=1), float(alone), np.inf)
    full = np.concatenate([lat, device[:, None]], axis=1)
    move = np.zeros((S + 1, S + 1))
    move[:S, :S] = mig
    cost = full[0].copy()
    back = np.zeros((T, S + 1), dtype=int)
    for t in range(1, T):
        via = cost[:, None] + move  # [from, to]
        back[t] = np.argmin(via, axis=0)
        cost = via[back[t], np.arange(S + 1)] + full[t]
    plan = np.empty(T, dtype=int)
    plan[-1] = int(np.argmin(cost))
    for t in range(T - 1, 0, -1):
        plan[t - 1] = back[t, plan[t]]
    return plan


POLICIES = ("nearest", "nearest-warm", "never", "aware", "oracle")


def simulate(policy: str, world: World, wl, xy, dt: float, outages=None,
             rule: AwareRule | None = None) -> dict:
    """One user run under ``policy``: per-request latencies, migrations (aborted ones
    included), cold starts, aborted migrations, lost stages, migration seconds, total cost.
    ``wl``: a Workload or a tuple of them; ``rule``: the aware policy's settings."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise ValueError(f"path must have shape [T, 2], got {xy.shape}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r} must be a finite number of seconds > 0")
    options(wl)
    return _run(policy, world, wl, xy, dt, outages, rule)


def compare(world: World, wl, paths, dt: float, policies=POLICIES, outages=None,
            rule: AwareRule | None = None) -> dict:
    """Per policy, averaged over runs: mean and p95 latency (s), migrations, cold starts,
    aborted migrations, lost stages, requests outside every cell, total cost (s)."""
    res = {}
    for p in policies:
        runs = [simulate(p, world, wl, xy, dt, outages, rule) for xy in paths]
        res[p] = {"mean_s": float(np.mean([r["latency"].mean() for r in runs])),
                  "p95_s": float(np.mean([np.percentile(r["latency"], 95) for r in runs]))}
        for k in ("migrations", "cold_starts", "prewarms", "aborted", "lost", "outside",
                  "total_s"):
            res[p][k] = float(np.mean([r[k] for r in runs]))
    return res
