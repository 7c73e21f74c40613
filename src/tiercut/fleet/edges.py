"""The shared edge: servers with cells, cores and speed; each user's reachable servers and
its rate to each.

A user may attach to any server whose cell covers it (its radio and its compute go to that
server, so the choice of server is also the choice of cell). Its rate to a server is the
propagation model's (tiercut.mobility.Radio: log-distance path loss and Shannon capacity) or,
with per-cell traces, that rate times the cell's trace at that time over the trace's mean: a
trace says how the cell's capacity rises and falls (other traffic, weather, a crowd), the
distance says where in the cell the user stands.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiercut.link.traces import BandwidthTrace
from tiercut.mobility.world import Radio, World


@dataclass(frozen=True)
class Cloud:
    """A cloud behind every edge server's backhaul: compute ``speed`` times an edge server's,
    no queue (it scales out), reached over ``backhaul_bps`` with ``delay_s`` one way."""
    speed: float = 4.0
    backhaul_bps: float = 1e9
    delay_s: float = 0.02

    def __post_init__(self):
        for name in ("speed", "backhaul_bps"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Cloud.{name}={v!r}: accepted is a finite number > 0")
        if not (np.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"Cloud.delay_s={self.delay_s!r}: accepted is a finite number "
                             ">= 0 seconds")

    def seconds(self, edge_s, bits):
        """Per cut option: the backhaul both ways, the bits over it, the cloud's compute."""
        return 2 * self.delay_s + np.asarray(bits) / self.backhaul_bps + \
            np.asarray(edge_s) / self.speed


class Edges:
    def __init__(self, world: World, cores=4, cell_traces=None, trace_offsets_s=None,
                 seed: int = 0, cloud: Cloud | None = None):
        self.world = world
        self.centers = world.centers
        self.radii = world.radii
        self.speed = world.speeds
        s = len(world.servers)
        self.cores = np.broadcast_to(np.asarray(cores, dtype=float), (s,)).copy()
        if not (np.isfinite(self.cores).all() and (self.cores > 0).all()):
            raise ValueError(f"cores={cores!r}: every server needs a finite number of cores > 0")
        self.radio: Radio = world.radio
        if cloud is not None and not isinstance(cloud, Cloud):
            raise ValueError(f"cloud={cloud!r}: give a tiercut.fleet.Cloud or None")
        self.cloud = cloud
        self._traces = None
        if cell_traces is not None:
            traces = list(cell_traces)
            if not traces or not all(isinstance(t, BandwidthTrace) for t in traces):
                raise ValueError("cell_traces must be a non-empty list of BandwidthTrace "
                                 "(tiercut.link.traces.load_trace)")
            rng = np.random.default_rng(seed)
            # server i replays trace i mod len(traces), from its own random point of the loop
            self._traces = [traces[i % len(traces)] for i in range(s)]
            self._offsets = (rng.uniform(0, [t.duration_s for t in self._traces])
                             if trace_offsets_s is None else np.asarray(trace_offsets_s, float))
            for t in self._traces:
                if not t.mean_bps > 0:
                    raise ValueError(f"cell trace {t.name!r} has mean rate 0: it carries "
                                     "nothing, so it cannot scale a cell's capacity")

    def __len__(self) -> int:
        return len(self.centers)

    def candidates(self, xy: np.ndarray, m: int) -> np.ndarray:
        """int[N, m]: up to m servers covering each user, nearest first; -1 pads."""
        c = self.centers
        # squared distances as |x|^2 + |c|^2 - 2 x.c: one matrix product for all pairs
        d2 = (xy * xy).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * (xy @ c.T)
        d2 = np.where(d2 <= (self.radii ** 2)[None, :], d2, np.inf)
        m = min(m, d2.shape[1])
        idx = np.argpartition(d2, m - 1, axis=1)[:, :m] if m < d2.shape[1] \
            else np.tile(np.arange(d2.shape[1]), (len(d2), 1))
        dd = np.take_along_axis(d2, idx, axis=1)
        order = np.argsort(dd, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        dd = np.take_along_axis(dd, order, axis=1)
        return np.where(np.isfinite(dd), idx, -1)

    def trace_factors(self, t: float) -> np.ndarray:
        """[S] each cell's capacity at time t over its mean (ones without traces)."""
        if self._traces is None:
            return np.ones(len(self))
        return np.array([tr.rate_at(t + o) / tr.mean_bps
                         for tr, o in zip(self._traces, self._offsets)])

    def rates(self, xy: np.ndarray, cand: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """[N, m] bit/s from each user to each candidate; 0 where the candidate is -1 or the
        user has left its cell since the candidates were found."""
        safe = np.maximum(cand, 0)
        diff = xy[:, None, :] - self.centers[safe]
        d = np.sqrt((diff * diff).sum(axis=2))
        ok = (cand >= 0) & (d <= self.radii[safe])
        return np.where(ok, self.radio.rate_bps(d) * factors[safe], 0.0)
