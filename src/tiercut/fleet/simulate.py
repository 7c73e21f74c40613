"""Many users sharing edge servers, simulated in time slots of ``dt`` seconds.

Each slot: users move; each asks Poisson(rate * dt) times; the users who ask choose a cut and
a server (the controller); their work joins three kinds of first-come-first-served queue,
each held as the seconds of work waiting (a fluid model): the user's own device (served at
one second a second), the chosen cell's airtime (one second a second, shared by everyone
attached there, up- and downlink alike) and the chosen server's cores (``cores`` core-seconds
a second; one request runs on one core). A request's latency is the waits it finds in the
queues it joins plus its own work there plus its fixed latencies, and, when its server is not
the one holding the user's state, the state's move (``switch_s``).

Deciders go in ``batches`` random groups per slot, each seeing the work of the groups before
it: what users asking at different moments of the slot would see. Deciding all at once on the
slot's starting queues would make every user rush to the same idle server.

With a cloud (``Edges(cloud=Cloud(...))``) a user may also send its edge part through its
nearest cell and the backhaul to the cloud: airtime in that cell, then the backhaul's delay
both ways and its bits at the backhaul's rate, then the cloud's compute, which has no queue
(it scales out). The state then lives in the cloud.

A user outside every cell can only run its model on the device: it takes the all-device cut
(a fallback, counted in ``outside``), so the options must include one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tiercut.fleet.controllers import Choice
from tiercut.fleet.edges import Edges
from tiercut.fleet.options import as_arrays
from tiercut.fleet.users import Users, Walkers

BINS_PER_DECADE = 200
LOW_DECADE = -4  # latency histogram from 0.1 ms ...
DECADES = 9  # ... to 100,000 s


@dataclass
class Fleet:
    edges: Edges
    users: Users
    options: tuple
    walkers: Walkers | None = None  # None: nobody moves
    switch_s: float = 0.0  # moving a user's state to another server, paid by its next request
    candidates: int = 4  # servers a user may attach to: the nearest covering ones
    refresh_s: float = 10.0  # how often the candidate servers are looked up again

    def __post_init__(self):
        self.arrays = as_arrays(self.options)
        local = (self.arrays["bits"] == 0) & (self.arrays["edge_s"] == 0)
        if not local.any():
            raise ValueError("the cut options have no all-device cut (bits=0, edge_s=0); "
                             "users outside every cell need one")
        self.remote = ~local
        if not (np.isfinite(self.switch_s) and self.switch_s >= 0):
            raise ValueError(f"switch_s={self.switch_s!r} must be a finite number of seconds "
                             ">= 0")
        if not (isinstance(self.candidates, int) and self.candidates >= 1):
            raise ValueError(f"candidates={self.candidates!r} must be a whole number >= 1")
        if self.walkers is not None and len(self.walkers.xy) != len(self.users):
            raise ValueError(f"{len(self.walkers.xy)} walkers for {len(self.users)} users")


@dataclass
class Result:
    controller: str
    requests: int
    mean_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    local_share: float  # requests run wholly on the device
    cloud_share: float  # requests whose edge part ran in the cloud
    outside: int  # of them, requests from users outside every cell
    switches: int  # state moves between servers
    wait_series: np.ndarray  # per slot, the longest server wait (backlog over cores), seconds
    air_series: np.ndarray  # per slot, the longest airtime wait, seconds
    sim_s: float
    wall_s: float
    hist: np.ndarray = field(repr=False, default=None)

    @property
    def stable(self) -> bool:
        """Backlog not growing: the worst wait's mean over the last quarter of the run is at
        most 1.2 times its mean over the third quarter, plus half a second. (A backlog
        growing linearly from zero gives a ratio of 1.4 however long the run.)"""
        w = np.maximum(self.wait_series, self.air_series)
        n = len(w)
        q3, q4 = w[n // 2:max(3 * n // 4, n // 2 + 1)].mean(), w[3 * n // 4:].mean()
        return bool(q4 <= 1.2 * q3 + 0.5)


def _quantile(hist: np.ndarray, q: float) -> float:
    c = np.cumsum(hist)
    if c[-1] == 0:
        return float("nan")
    i = int(np.searchsorted(c, q * c[-1]))
    return 10 ** (LOW_DECADE + (i + 0.5) / BINS_PER_DECADE)


def run(fleet: Fleet, ctl, duration_s: float, dt: float = 1.0, batches: int = 8,
        seed: int = 0) -> Result:
    """Simulate ``duration_s`` seconds under controller ``ctl``; see the module's notes."""
    if not (duration_s > 0 and dt > 0 and duration_s >= dt):
        raise ValueError(f"duration_s={duration_s!r} and dt={dt!r}: need 0 < dt <= duration_s")
    if not (isinstance(batches, int) and batches >= 1):
        raise ValueError(f"batches={batches!r} must be a whole number >= 1")
    t_wall = time.perf_counter()
    rng = np.random.default_rng(seed)
    e, u, a = fleet.edges, fleet.users, fleet.arrays
    n, s = len(u), len(e)
    remote = fleet.remote[None, None, :]
    bits, edge_s = a["bits"][None, None, :], a["edge_s"][None, None, :]
    fixed, dev_s = a["fixed_s"][None, None, :], a["device_s"][None, None, :]
    slots = int(round(duration_s / dt))
    wait_series, air_series = np.zeros(slots), np.zeros(slots)
    hist = np.zeros(DECADES * BINS_PER_DECADE)
    air_q, cpu_q, dev_q = np.zeros(s), np.zeros(s), np.zeros(n)
    home = np.full(n, -1)
    xy = u.xy if fleet.walkers is None else fleet.walkers.xy
    cand = e.candidates(xy, fleet.candidates)
    m = cand.shape[1]
    cloud_col = np.zeros((1, m + (e.cloud is not None), 1), dtype=bool)
    cloud_col[0, m:, 0] = True
    requests = local = outside = switches = cloud = 0
    total_s = 0.0
    next_refresh = fleet.refresh_s
    for k in range(slots):
        t = k * dt
        if fleet.walkers is not None:
            xy = fleet.walkers.step(dt)
        if t >= next_refresh:
            cand, next_refresh = e.candidates(xy, fleet.candidates), t + fleet.refresh_s
        asks = rng.poisson(u.rate_per_s * dt)
        who = np.flatnonzero(asks)
        rng.shuffle(who)
        factors = e.trace_factors(t)
        for group in np.array_split(who, batches):
            if len(group) == 0:
                continue
            c = cand[group]
            rate = e.rates(xy[group], c, factors)
            dest = c  # where the state lives: a server, or s for the cloud
            if e.cloud is not None:  # one more column: through the nearest cell to the cloud
                c, rate = np.concatenate([c, c[:, :1]], 1), np.concatenate([rate, rate[:, :1]], 1)
                dest = np.concatenate([dest, np.where(dest[:, :1] >= 0, s, -1)], 1)
            rate = rate[:, :, None]  # [b, m, 1]
            reach = rate > 0
            sc = np.maximum(c, 0)
            air = np.where(remote, bits / np.where(reach, rate, 1.0), 0.0)
            cpu = np.where(remote & ~cloud_col, edge_s / e.speed[sc][:, :, None], 0.0)
            far = 0.0 if e.cloud is None else \
                np.where(remote & cloud_col, e.cloud.seconds(a["edge_s"], a["bits"]), 0.0)
            dev = dev_s / u.device_speed[group][:, None, None]
            moved = (home[group][:, None] >= 0) & (dest != home[group][:, None])
            lat0 = dev + air + cpu + far + fixed + remote * moved[:, :, None] * fleet.switch_s
            ok = np.where(remote, reach, np.arange(c.shape[1])[None, :, None] == 0)
            lat0 = np.where(ok, lat0, np.inf)
            w_dev = dev_q[group][:, None, None]
            w_air = air_q[sc][:, :, None]
            w_cpu = np.where(cloud_col, 0.0, (cpu_q / e.cores)[sc][:, :, None])
            pick = ctl.choose(Choice(lat0, dev, air, cpu, w_dev, w_air, w_cpu, remote))
            j, o = np.divmod(pick, len(fleet.options))
            r = np.arange(len(group))
            lat = lat0[r, j, o]
            if not np.isfinite(lat).all():
                raise RuntimeError(f"controller {ctl.name!r} chose a server out of reach")
            is_remote = fleet.remote[o]
            lat = lat + w_dev[r, 0, 0] + is_remote * (w_air[r, j, 0] + w_cpu[r, j, 0])
            nreq = asks[group]
            # the user's own requests of this slot queue behind each other on the device
            dev_q[group] += nreq * dev[r, 0, o]
            srv = sc[r, j]
            np.add.at(air_q, srv[is_remote], (nreq * air[r, j, o])[is_remote])
            np.add.at(cpu_q, srv[is_remote], (nreq * cpu[r, j, o])[is_remote])
            new_home = np.where(is_remote, dest[r, j], home[group])
            cloud += int(nreq[is_remote & cloud_col[0, j, 0]].sum())
            switches += int(((home[group] >= 0) & (new_home != home[group])).sum())
            home[group] = new_home
            lo = (~is_remote)
            local += int(nreq[lo].sum())
            outside += int(nreq[lo & (c[:, 0] < 0)].sum())
            requests += int(nreq.sum())
            total_s += float((nreq * lat).sum())
            b = ((np.log10(np.maximum(lat, 1e-12)) - LOW_DECADE) * BINS_PER_DECADE).astype(int)
            hist += np.bincount(np.clip(b, 0, len(hist) - 1), weights=nreq,
                                minlength=len(hist))
        wait_series[k] = float((cpu_q / e.cores).max())
        air_series[k] = float(air_q.max())
        air_q = np.maximum(air_q - dt, 0.0)
        cpu_q = np.maximum(cpu_q - e.cores * dt, 0.0)
        dev_q = np.maximum(dev_q - dt, 0.0)
    return Result(ctl.name, requests, total_s / max(requests, 1), _quantile(hist, 0.5),
                  _quantile(hist, 0.95), _quantile(hist, 0.99), local / max(requests, 1),
                  cloud / max(requests, 1),
                  outside, switches, wait_series, air_series, duration_s,
                  time.perf_counter() - t_wall, hist)
