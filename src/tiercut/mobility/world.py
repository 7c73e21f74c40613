"""Edge cells on a plane, the rate model (a log-distance radio or per-cell traces), and the
backhaul joining the servers (one uniform hop, or a hop count per pair of servers).

Backhaul: ``bits`` sent between servers ``h`` hops apart take ``h * backhaul_delay_s`` plus
``bits / backhaul_bps`` (packets pipeline across the routers, so the transfer is paid once), or
``h * (backhaul_delay_s + bits / backhaul_bps)`` with ``store_and_forward=True`` (a relay that
receives the whole tensor at each hop before sending it on). ``hops=None`` is the uniform world:
every two distinct servers one hop apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EdgeServer:
    """A server at (x, y) covering a disc of ``radius_m``; ``speed`` scales its compute."""
    name: str
    x: float
    y: float
    radius_m: float
    speed: float = 1.0

    def __post_init__(self):
        if not self.radius_m > 0:
            raise ValueError(f"EdgeServer {self.name!r}: radius_m={self.radius_m} must be > 0")
        if not self.speed > 0:
            raise ValueError(f"EdgeServer {self.name!r}: speed={self.speed} must be > 0")


@dataclass(frozen=True)
class Radio:
    """Log-distance path loss and Shannon capacity: B*log2(1 + P*d^-alpha*g0/N).

    Defaults: 20 MHz, 23 dBm (0.2 W) transmit, alpha 3.5, g0 = -50 dB at 1 m (includes
    shadowing/penetration margin), noise -174 dBm/Hz + 9 dB noise figure over 20 MHz
    (about -92 dBm). A user 50 m away gets about 44 Mbit/s, at 150 m about 2 Mbit/s.
    """
    bandwidth_hz: float = 20e6
    tx_power_w: float = 0.2
    alpha: float = 3.5
    g0: float = 1e-5
    noise_w: float = 10 ** ((-174 + 9 + 10 * np.log10(20e6) - 30) / 10)
    min_distance_m: float = 1.0

    def rate_bps(self, distance_m) -> np.ndarray:
        d = np.maximum(np.asarray(distance_m, dtype=float), self.min_distance_m)
        snr = self.tx_power_w * d ** (-self.alpha) * self.g0 / self.noise_w
        return self.bandwidth_hz * np.log2(1.0 + snr)


@dataclass(frozen=True)
class World:
    """Servers, the rate model every user shares, and the backhaul joining the servers.

    ``hops``: None (uniform, one hop between any two servers), "distance" (a link between
    servers no farther apart than 1.01 x the largest nearest-neighbour distance, hops = the
    shortest path: Manhattan on a grid, index difference on a line), or an S x S matrix of
    non-negative integers, symmetric, zero on the diagonal. ``cell_traces``: a
    :class:`~tiercut.mobility.traces.CellTraces` replacing the radio's rate (then
    :meth:`rates` needs the time).
    """
    servers: tuple
    radio: Radio = Radio()
    backhaul_bps: float = 1e9
    backhaul_delay_s: float = 0.002
    hops: object = None
    store_and_forward: bool = False
    cell_traces: object = None

    def __post_init__(self):
        object.__setattr__(self, "servers", tuple(self.servers))
        if not self.servers:
            raise ValueError("World: servers is empty; give at least one EdgeServer")
        if not self.backhaul_bps > 0 or self.backhaul_delay_s < 0:
            raise ValueError("World: backhaul_bps must be > 0 and backhaul_delay_s >= 0")
        S = len(self.servers)
        if isinstance(self.hops, str):
            if self.hops != "distance":
                raise ValueError(f"World: hops={self.hops!r}; accepted are None, 'distance' "
                                 f"or an S x S matrix of hop counts")
            object.__setattr__(self, "hops", _hops_by_distance(self.centers))
        elif self.hops is not None:
            h = np.asarray(self.hops)
            if h.shape != (S, S) or not np.all(np.isfinite(h)) or np.any(h < 0) \
                    or np.any(h != np.round(h)) or np.any(h != h.T) or np.any(np.diag(h) != 0):
                raise ValueError(f"World: hops must be a symmetric {S}x{S} matrix of integers "
                                 f">= 0 with a zero diagonal, got shape {h.shape}")
            if S > 1 and np.any(h + np.eye(S) == 0):
                raise ValueError("World: hops between two distinct servers must be >= 1")
            object.__setattr__(self, "hops", tuple(tuple(int(v) for v in r) for r in h))
        if self.cell_traces is not None and len(self.cell_traces) != S:
            raise ValueError(f"World: cell_traces has {len(self.cell_traces)} traces for "
                             f"{S} servers; give one per server")

    @property
    def hop_matrix(self) -> np.ndarray:
        """int[S, S]: backhaul hops between each two servers."""
        if self.hops is None:
            return 1 - np.eye(len(self.servers), dtype=int)
        return np.array(self.hops, dtype=int)

    def backhaul_s(self, bits, hops) -> np.ndarray:
        """Seconds to send ``bits`` over ``hops`` backhaul hops (0 for 0 hops)."""
        hops = np.asarray(hops, dtype=float)
        per = np.asarray(bits, dtype=float) / self.backhaul_bps
        crossings = hops if self.store_and_forward else np.minimum(hops, 1.0)
        return hops * self.backhaul_delay_s + crossings * per

    @property
    def centers(self) -> np.ndarray:
        return np.array([[s.x, s.y] for s in self.servers], dtype=float)

    @property
    def radii(self) -> np.ndarray:
        return np.array([s.radius_m for s in self.servers], dtype=float)

    @property
    def speeds(self) -> np.ndarray:
        return np.array([s.speed for s in self.servers], dtype=float)

    def distances(self, xy) -> np.ndarray:
        xy = np.atleast_2d(np.asarray(xy, dtype=float))
        return np.linalg.norm(xy[:, None, :] - self.centers[None, :, :], axis=2)

    def rates(self, xy, t=None) -> np.ndarray:
        """[n, S] rate in bit/s from each position (at times ``t``, [n] seconds, needed with
        cell traces) to each server; 0 outside its radius."""
        d = self.distances(xy)
        if self.cell_traces is None:
            r = self.radio.rate_bps(d)
        else:
            if t is None:
                raise ValueError("World.rates: this world's rate comes from cell_traces; "
                                 "pass t, the time of each position in seconds")
            t = np.broadcast_to(np.asarray(t, dtype=float), (len(d),))
            r = self.cell_traces.rates(t, d, self.radii, self.radio)
        return np.where(d <= self.radii[None, :], r, 0.0)

    def nearest(self, xy) -> np.ndarray:
        """int[n]: the nearest server whose cell covers each position, -1 outside every cell."""
        d = self.distances(xy)
        d = np.where(d <= self.radii[None, :], d, np.inf)
        idx = np.argmin(d, axis=1)
        return np.where(np.isfinite(d.min(axis=1)), idx, -1).astype(int)

    @classmethod
    def line(cls, n_servers: int, spacing_m: float, radius_m: float,
             backhaul: str = "uniform", **kw) -> "World":
        """``n_servers`` cells along the x axis, the first at the origin. ``backhaul``:
        "uniform" (one hop between any two) or "hops" (a chain: hops = index difference)."""
        servers = [EdgeServer(f"e{i}", i * spacing_m, 0.0, radius_m) for i in range(n_servers)]
        i = np.arange(n_servers)
        kw.setdefault("hops", _backhaul(backhaul, np.abs(i[:, None] - i[None, :])))
        return cls(tuple(servers), **kw)

    @classmethod
    def grid(cls, nx: int, ny: int, spacing_m: float, radius_m: float,
             backhaul: str = "uniform", **kw) -> "World":
        """nx*ny cells, centres at ((i+0.5)*spacing, (j+0.5)*spacing). ``backhaul``:
        "uniform" or "hops" (a mesh of neighbours: hops = Manhattan distance in cells)."""
        servers = [EdgeServer(f"e{i}_{j}", (i + 0.5) * spacing_m, (j + 0.5) * spacing_m,
                              radius_m) for j in range(ny) for i in range(nx)]
        ij = np.array([(i, j) for j in range(ny) for i in range(nx)]).reshape(-1, 2)
        manhattan = np.abs(ij[:, None, :] - ij[None, :, :]).sum(axis=2)
        kw.setdefault("hops", _backhaul(backhaul, manhattan))
        return cls(tuple(servers), **kw)


def _backhaul(kind: str, hops: np.ndarray):
    if kind == "uniform":
        return None
    if kind == "hops":
        return hops
    raise ValueError(f"backhaul={kind!r}; accepted are 'uniform' and 'hops'")


def _hops_by_distance(centers: np.ndarray) -> tuple:
    """Shortest-path hops over links between servers within 1.01 x the largest
    nearest-neighbour distance (breadth-first from each server)."""
    S = len(centers)
    if S == 1:
        return ((0,),)
    d = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=2)
    nn = np.where(np.eye(S, dtype=bool), np.inf, d).min(axis=1)
    adj = (d <= 1.01 * nn.max()) & ~np.eye(S, dtype=bool)
    hops = np.full((S, S), -1, dtype=int)
    for a in range(S):
        hops[a, a], frontier, k = 0, [a], 0
        while frontier:
            k += 1
            nxt = [b for b in np.flatnonzero(adj[frontier].any(axis=0)) if hops[a, b] < 0]
            hops[a, nxt] = k
            frontier = nxt
    if np.any(hops < 0):
        raise ValueError("World: hops='distance' leaves some servers unconnected (clusters "
                         "farther apart than the largest nearest-neighbour distance); give "
                         "an explicit hop matrix")
    return tuple(tuple(int(v) for v in r) for r in hops)
