"""Edge servers on a plane, the backhaul between them, and the rate a user gets from each.

Two rate models share one protocol, ``rate_bps(server_index, distance_m, t) -> ndarray``:

- ``Radio``: log-distance path loss and Shannon capacity (see its docstring), the same for
  every cell and constant in time;
- ``CellTraces``: one measured ``BandwidthTrace`` per cell, scaled by a coverage factor that
  falls with distance (see its docstring).

``World.rates`` applies the model to every user and server at once and zeroes a server's rate
outside its radius. Pure data and arithmetic: nothing here reads a file but ``CellTraces.load``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import TiercutError
from ..link.traces import BandwidthTrace, load_trace


class WorldError(TiercutError, ValueError):
    """A world that cannot be simulated: no servers, bad radius, names repeating, bad shape."""


def _positive(what: str, value: float, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (
        value >= 0 if zero_ok else value > 0)
    if not ok:
        raise WorldError(f"{what} must be a finite number {'>=' if zero_ok else '>'} 0, "
                         f"got {value!r}")


@dataclass(frozen=True)
class EdgeServer:
    name: str
    x: float
    y: float
    radius_m: float  # users farther than this get no rate from its cell
    speed: float = 1.0  # compute speed relative to the profile's edge host (2 = twice as fast)
    workers: int = 1

    def __post_init__(self) -> None:
        for what, v in (("x", self.x), ("y", self.y)):
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise WorldError(f"edge server {self.name!r}: {what} must be finite, got {v!r}")
        _positive(f"edge server {self.name!r}: radius_m", self.radius_m)
        _positive(f"edge server {self.name!r}: speed", self.speed)
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise WorldError(f"edge server {self.name!r}: workers must be an integer >= 1, "
                             f"got {self.workers!r}")


@dataclass(frozen=True)
class Backhaul:
    """Wired links: between edge servers (per hop; a migration moves a stage's state over it,
    a request served away from its cell crosses it both ways) and from an edge to the cloud."""

    rate_bps: float = 1e9
    delay_s: float = 0.002  # one way, per hop
    cloud_rate_bps: float = 1e9
    cloud_delay_s: float = 0.020  # one way

    def __post_init__(self) -> None:
        _positive("backhaul rate_bps", self.rate_bps)
        _positive("backhaul delay_s", self.delay_s, zero_ok=True)
        _positive("backhaul cloud_rate_bps", self.cloud_rate_bps)
        _positive("backhaul cloud_delay_s", self.cloud_delay_s, zero_ok=True)

    def transfer_s(self, nbytes: float, hops: float) -> float:
        """Seconds to move ``nbytes`` over ``hops`` hops (store and forward at each hop)."""
        return hops * (nbytes * 8.0 / self.rate_bps + self.delay_s)


class RateModel(Protocol):
    def rate_bps(self, server_index: int, distance_m: np.ndarray, t: float) -> np.ndarray: ...


@dataclass(frozen=True)
class Radio:
    """Log-distance path loss with Shannon capacity, the same in every cell:

        PL(d) = PL(d0) + 10·n·log10(max(d, d0) / d0)           [dB]
        PL(d0) = 20·log10(4π·d0·f / c)                           (free space at d0)
        SNR(d) = P_tx − PL(d) − (N0 + 10·log10(B) + NF)         [dB]
        rate(d) = efficiency · B · log2(1 + 10^(SNR/10))         [bit/s]

    (Rappaport, *Wireless Communications*, 2nd ed., §4.9 for the path loss; Shannon 1948 for
    the capacity.) Defaults: a 20 MHz uplink at 3.5 GHz, 23 dBm (a phone's maximum), thermal
    noise −174 dBm/Hz plus a 9 dB noise figure, exponent 3.0 (urban, line of sight to
    obstructed), efficiency 0.6 of capacity. With them the rate is about 150 Mbit/s at 20 m,
    20 Mbit/s at 250 m and 5 Mbit/s at 400 m.
    """

    bandwidth_hz: float = 20e6
    tx_power_dbm: float = 23.0
    noise_dbm_per_hz: float = -174.0
    noise_figure_db: float = 9.0
    exponent: float = 3.0
    frequency_hz: float = 3.5e9
    reference_m: float = 1.0
    efficiency: float = 0.6

    def __post_init__(self) -> None:
        for what in ("bandwidth_hz", "exponent", "frequency_hz", "reference_m", "efficiency"):
            _positive(f"radio {what}", getattr(self, what))

    def snr_db(self, distance_m: np.ndarray) -> np.ndarray:
        d = np.maximum(np.asarray(distance_m, dtype=float), self.reference_m)
        pl0 = 20.0 * math.log10(4 * math.pi * self.reference_m * self.frequency_hz / 299_792_458.0)
        pl = pl0 + 10.0 * self.exponent * np.log10(d / self.reference_m)
        noise = self.noise_dbm_per_hz + 10.0 * math.log10(self.bandwidth_hz) + self.noise_figure_db
        return self.tx_power_dbm - pl - noise

    def rate_bps(self, server_index: int, distance_m: np.ndarray, t: float = 0.0) -> np.ndarray:
        snr = 10.0 ** (self.snr_db(distance_m) / 10.0)
        return self.efficiency * self.bandwidth_hz * np.log2(1.0 + snr)


@dataclass(frozen=True)
class CellTraces:
    """One measured bandwidth trace per cell. A user at distance d from cell i gets

        rate = trace_i(t + offset_i) · coverage(d / radius_i)
        coverage(u) = 1 for u <= inner, falling linearly to ``edge`` at u = 1

    (the trace is what a user near the cell's centre measured; the factor stands in for the
    weaker signal towards the cell's edge). ``World.rates`` zeroes it beyond the radius.
    Offsets default to staggering the cells by a ``1/S`` of each trace's loop, so that cells
    sharing one file do not fade in lockstep.
    """

    traces: tuple[BandwidthTrace, ...]
    radii_m: tuple[float, ...]
    offsets_s: tuple[float, ...] = ()
    inner: float = 0.5
    edge: float = 0.3

    def __post_init__(self) -> None:
        if not self.traces:
            raise WorldError("CellTraces needs one trace per cell, got none")
        if len(self.radii_m) != len(self.traces):
            raise WorldError(f"CellTraces: {len(self.traces)} traces but {len(self.radii_m)} radii")
        if not self.offsets_s:
            s = len(self.traces)
            object.__setattr__(self, "offsets_s",
                               tuple(tr.duration_s * i / s for i, tr in enumerate(self.traces)))
        if len(self.offsets_s) != len(self.traces):
            raise WorldError(f"CellTraces: {len(self.traces)} traces but {len(self.offsets_s)} "
                             "offsets")
        if not 0 <= self.inner < 1 or not 0 <= self.edge <= 1:
            raise WorldError(f"CellTraces: need 0 <= inner < 1 and 0 <= edge <= 1, got "
                             f"inner={self.inner!r}, edge={self.edge!r}")

    @classmethod
    def load(cls, paths: Sequence[str | Path], radii_m: Sequence[float],
             scale: float = 1.0) -> "CellTraces":
        """Cell i replays ``paths[i % len(paths)]`` (read with tiercut.link.traces.load_trace)
        times ``scale``."""
        if not paths:
            raise WorldError("CellTraces.load needs at least one trace file")
        read = [load_trace(p).scaled(scale) for p in paths]
        return cls(tuple(read[i % len(read)] for i in range(len(radii_m))), tuple(radii_m))

    def coverage(self, server_index: int, distance_m: np.ndarray) -> np.ndarray:
        u = np.asarray(distance_m, dtype=float) / self.radii_m[server_index]
        fall = (u - self.inner) / (1.0 - self.inner)
        return np.clip(1.0 - fall * (1.0 - self.edge), self.edge, 1.0)

    def rate_bps(self, server_index: int, distance_m: np.ndarray, t: float) -> np.ndarray:
        base = self.traces[server_index].rate_at(t + self.offsets_s[server_index])
        return base * self.coverage(server_index, distance_m)


@dataclass(frozen=True)
class World:
    servers: tuple[EdgeServer, ...]
    backhaul: Backhaul = Backhaul()
    radio: RateModel = Radio()
    # hops[i][j]: backhaul hops between servers i and j (1 between any two when not given)
    hops: tuple[tuple[int, ...], ...] = ()
    _xy: np.ndarray = field(init=False, repr=False, compare=False)
    _r: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", tuple(self.servers))
        if not self.servers:
            raise WorldError("a world needs at least one edge server")
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise WorldError(f"edge server names repeat: {names}")
        s = len(self.servers)
        if not self.hops:
            object.__setattr__(self, "hops", tuple(tuple(int(i != j) for j in range(s))
                                                   for i in range(s)))
        h = np.asarray(self.hops)
        if h.shape != (s, s) or (h < 0).any() or (np.diag(h) != 0).any():
            raise WorldError(f"hops must be an {s}x{s} matrix of integers >= 0 with a zero "
                             f"diagonal, got shape {h.shape}")
        object.__setattr__(self, "_xy", np.array([[sv.x, sv.y] for sv in self.servers]))
        object.__setattr__(self, "_r", np.array([sv.radius_m for sv in self.servers]))

    @property
    def size(self) -> int:
        return len(self.servers)

    @property
    def hop_matrix(self) -> np.ndarray:
        return np.asarray(self.hops, dtype=float)

    @property
    def centres(self) -> np.ndarray:
        return self._xy.copy()

    @property
    def radii(self) -> np.ndarray:
        return self._r.copy()

    def distances(self, xy: np.ndarray) -> np.ndarray:
        """[n, S] metres from each user to each server."""
        p = _points(xy)
        return np.hypot(p[:, None, 0] - self._xy[None, :, 0], p[:, None, 1] - self._xy[None, :, 1])

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """[n, S] bool: the user is within the server's radius."""
        return self.distances(xy) <= self._r[None, :]

    def rates(self, xy: np.ndarray, t: float = 0.0) -> np.ndarray:
        """[n, S] bit/s each user would get from each server's cell at time ``t``; 0 outside
        the server's radius."""
        d = self.distances(xy)
        out = np.zeros_like(d)
        for i in range(self.size):
            out[:, i] = self.radio.rate_bps(i, d[:, i], t)
        return np.where(d <= self._r[None, :], out, 0.0)

    def covered(self, xy: np.ndarray) -> np.ndarray:
        """[n] bool: within some server's radius."""
        return self.inside(xy).any(axis=1)

    def nearest(self, xy: np.ndarray) -> np.ndarray:
        """[n] index of the nearest server whose cell covers the user, -1 outside every cell."""
        d = self.distances(xy)
        d = np.where(d <= self._r[None, :], d, np.inf)
        idx = np.argmin(d, axis=1)
        return np.where(np.isfinite(d[np.arange(len(d)), idx]), idx, -1)

    @classmethod
    def grid(cls, rows: int, cols: int, spacing_m: float, radius_m: float | None = None,
             backhaul: Backhaul = Backhaul(), radio: RateModel = Radio(), speed: float = 1.0,
             workers: int = 1) -> "World":
        """rows × cols servers ``spacing_m`` apart starting at (spacing/2, spacing/2), named
        e<r>_<c>; the radius defaults to 0.75 × spacing (neighbouring cells overlap and the
        square between four servers is covered); hops are grid (Manhattan) distances."""
        if not (isinstance(rows, int) and isinstance(cols, int) and rows >= 1 and cols >= 1):
            raise WorldError(f"grid needs integer rows, cols >= 1, got {rows!r} x {cols!r}")
        _positive("grid spacing_m", spacing_m)
        r = 0.75 * spacing_m if radius_m is None else radius_m
        cells = [(i, j) for i in range(rows) for j in range(cols)]
        servers = tuple(EdgeServer(f"e{i}_{j}", (j + 0.5) * spacing_m, (i + 0.5) * spacing_m,
                                   r, speed, workers) for i, j in cells)
        hops = tuple(tuple(abs(a[0] - b[0]) + abs(a[1] - b[1]) for b in cells) for a in cells)
        return cls(servers, backhaul, radio, hops)

    @classmethod
    def line(cls, count: int, spacing_m: float, radius_m: float | None = None,
             backhaul: Backhaul = Backhaul(), radio: RateModel = Radio(), speed: float = 1.0,
             workers: int = 1, y_m: float = 0.0) -> "World":
        """``count`` servers along y = ``y_m`` from x = 0, ``spacing_m`` apart (a road's
        roadside units), named e0, e1, ...; radius defaults to 0.6 × spacing; hops |i − j|."""
        if not (isinstance(count, int) and count >= 1):
            raise WorldError(f"line needs an integer count >= 1, got {count!r}")
        _positive("line spacing_m", spacing_m)
        r = 0.6 * spacing_m if radius_m is None else radius_m
        servers = tuple(EdgeServer(f"e{i}", i * spacing_m, y_m, r, speed, workers)
                        for i in range(count))
        hops = tuple(tuple(abs(i - j) for j in range(count)) for i in range(count))
        return cls(servers, backhaul, radio, hops)


def _points(xy: np.ndarray) -> np.ndarray:
    p = np.asarray(xy, dtype=float)
    if p.ndim == 1 and p.shape == (2,):
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 2:
        raise WorldError(f"positions must be an [n, 2] array of x, y metres, got shape {p.shape}")
    return p
