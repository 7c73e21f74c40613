"""Edge cells on a plane, a log-distance radio, and per-position uplink rates."""
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
    """Servers, the radio every user shares, and the backhaul joining the servers."""
    servers: tuple
    radio: Radio = Radio()
    backhaul_bps: float = 1e9
    backhaul_delay_s: float = 0.002

    def __post_init__(self):
        object.__setattr__(self, "servers", tuple(self.servers))
        if not self.servers:
            raise ValueError("World: servers is empty; give at least one EdgeServer")
        if not self.backhaul_bps > 0 or self.backhaul_delay_s < 0:
            raise ValueError("World: backhaul_bps must be > 0 and backhaul_delay_s >= 0")

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

    def rates(self, xy) -> np.ndarray:
        """[n, S] rate in bit/s from each position to each server; 0 outside its radius."""
        d = self.distances(xy)
        return np.where(d <= self.radii[None, :], self.radio.rate_bps(d), 0.0)

    def nearest(self, xy) -> np.ndarray:
        """int[n]: the nearest server whose cell covers each position, -1 outside every cell."""
        d = self.distances(xy)
        d = np.where(d <= self.radii[None, :], d, np.inf)
        idx = np.argmin(d, axis=1)
        return np.where(np.isfinite(d.min(axis=1)), idx, -1).astype(int)

    @classmethod
    def line(cls, n_servers: int, spacing_m: float, radius_m: float, **kw) -> "World":
        """``n_servers`` cells along the x axis, the first at the origin."""
        servers = [EdgeServer(f"e{i}", i * spacing_m, 0.0, radius_m) for i in range(n_servers)]
        return cls(tuple(servers), **kw)

    @classmethod
    def grid(cls, nx: int, ny: int, spacing_m: float, radius_m: float, **kw) -> "World":
        """nx*ny cells, centres at ((i+0.5)*spacing, (j+0.5)*spacing)."""
        servers = [EdgeServer(f"e{i}_{j}", (i + 0.5) * spacing_m, (j + 0.5) * spacing_m,
                              radius_m) for j in range(ny) for i in range(nx)]
        return cls(tuple(servers), **kw)
