"""A stage whose nodes divide each frame by rows (intra-layer), beside replicas.

Replicas raise throughput without halos or a gather, but each frame still takes its slowest
replica's whole stage; a divided stage (``tiercut.decompose``, D3's and DeepThings' split of
one layer range across nodes) shortens a frame, which is what a tight latency cap needs. A
``Split`` group is the same nodes as a replica group, marked to divide: its fastest node
coordinates (every frame enters and leaves there, as ``runtime.divided`` runs it) and the
stage [a, c) runs as

    coordinator's nodes [a, s)  +  the run [s, e) divided by rows  +  coordinator's [e, c)

for the s, e that finish first, the run's division priced by ``decompose.planner`` from the
coordinator's links to the others (each part: send its source rows, compute them with the
halo, send its rows back; the parts at once). The coordinator's one compute worker holds the
frame throughout, so the stage's period equals its latency. Runs are those
``decompose.candidate_runs`` finds between two candidate cuts; a node's seconds per part come
from its own profile, so unequal, non-scaled profiles are priced exactly (profiles that are
scaled copies share one table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..decompose.planner import (RowCosts, Worker, best_bounds, candidate_runs, part_seconds,
                                 row_costs)
from ..graph.dag import Graph
from ..measure.profile import Profile
from .pipeline import INF, Model, Split


@dataclass(frozen=True)
class SplitStage:
    """How a Split group runs stage [a, c): the run's ends, the division and its figures."""

    coordinator: int
    run: tuple[str, str]  # the divided run's first and last graph nodes
    hosts: tuple[int, ...]  # cluster nodes in row order
    bounds: tuple[int, ...]  # rows where each part but the last ends
    part_s: tuple[float, ...]
    latency_s: float
    energy_j: float


@dataclass
class _Run:
    first: int  # candidate-cut indices: the run is [first, end)
    end: int
    rows: RowCosts
    moved: np.ndarray  # (H+1, H+1) bytes a part [a, b) takes in and sends back
    base: dict[int, np.ndarray]  # profile class -> compute seconds of each part [a, b)


class Divisions:
    """Every candidate run of one graph, priced per Split group on demand and cached."""

    def __init__(self, model: Model, graph: Graph, profiles: Mapping[str, Profile],
                 wire_s_per_byte: Sequence[float], max_run_nodes: int = 60) -> None:
        self.model = model
        self.wire = np.asarray(wire_s_per_byte, dtype=float)
        index = {p: i for i, p in enumerate(model.positions)}
        names = model.node_names
        where = {v: i for i, v in enumerate(names)}
        self.node_seconds = np.array([[profiles[n].node(v).latency_s for v in names]
                                      for n in model.nodes])
        self._class = _profile_classes(self.node_seconds)
        self.runs: list[_Run] = []
        for run in candidate_runs(graph, max_run_nodes):
            a, e = where[run.names[0]], where[run.last] + 1
            if a in index and e in index:
                rows = row_costs(run)
                self.runs.append(_Run(index[a], index[e], rows, _moved(rows), {}))
        self._tables: dict[Split, tuple[np.ndarray, np.ndarray, np.ndarray, int, dict]] = {}

    def coordinator(self, group: Sequence[int]) -> int:
        """The group's fastest node (the lowest index among equals): frames enter and leave
        there, and it computes the stage's nodes outside the divided run."""
        return max(group, key=lambda i: (self.model.speed[i], -i))

    def latency(self, group: Split) -> np.ndarray:
        """(m+1, m+1) seconds of [a, c) on the divided group (inf where it cannot run)."""
        return self._table(group)[0]

    def detail(self, group: Split, a: int, c: int) -> SplitStage:
        latency, before, after, u, runs = self._table(group)
        if not np.isfinite(latency[a, c]):
            raise ValueError(f"stage [{a}, {c}) cannot run divided on {group}")
        e = int(after[a, c])
        s = int(before[a, e])
        run, order, bounds, parts = runs[(s, e)]
        edges = [0, *bounds, run.rows.height]
        m = self.model
        energy = sum(m.power_w[w] * self._compute(run, w)[lo, hi]
                     for w, lo, hi in zip(order, edges, edges[1:]))
        energy += m.power_w[u] * (self._own(u)[a, s] + self._own(u)[e, c])
        return SplitStage(u, (run.rows.first, run.rows.last), tuple(order), tuple(bounds),
                          tuple(parts), float(latency[a, c]), float(energy))

    # ---- tables ---------------------------------------------------------------------------
    def _table(self, group: Split):
        if group not in self._tables:
            self._tables[group] = self._build(group)
        return self._tables[group]

    def _build(self, group: Split):
        m = self.model
        k = m.m + 1
        u = self.coordinator(group)
        divided = np.full((k, k), INF)  # [s, e): the run divided
        runs: dict[tuple[int, int], tuple[_Run, list[int], tuple[int, ...],
                                          tuple[float, ...]]] = {}
        for run in self.runs:
            mats = {w: self._part_seconds(run, u, w) for w in group}
            h = run.rows.height
            order = sorted(group, key=lambda w: (mats[w][0, h], w))  # fastest alone first
            value, bounds = best_bounds([mats[w] for w in order])
            edges = [0, *bounds, h]
            parts = tuple(float(mats[w][lo, hi]) for w, lo, hi in zip(order, edges, edges[1:]))
            if value < divided[run.first, run.end]:  # every node takes a part (best_bounds)
                divided[run.first, run.end] = value
                runs[(run.first, run.end)] = (run, order, tuple(bounds), parts)
        own = self._own(u)
        # [a, e): the coordinator's nodes [a, s) then the run [s, e), the best s for each
        with np.errstate(invalid="ignore"):
            into = own[:, :, None] + divided[None, :, :]  # (a, s, e)
        before = np.argmin(into, axis=1)
        head = np.take_along_axis(into, before[:, None, :], axis=1)[:, 0, :]
        with np.errstate(invalid="ignore"):
            whole = head[:, :, None] + own[None, :, :]  # (a, e, c)
        after = np.argmin(whole, axis=1)
        latency = np.take_along_axis(whole, after[:, None, :], axis=1)[:, 0, :]
        wire = self.wire[u] * (m.crossing[:, None] + m.crossing[None, :])
        latency = np.where(np.isfinite(latency), latency + wire, INF)
        latency[m.memory > m.caps[list(group)].min()] = INF
        return latency, before, after, u, runs

    def _own(self, u: int) -> np.ndarray:
        """The coordinator's compute seconds of [a, c), 0 on the diagonal (no wire)."""
        m = self.model
        lat = np.concatenate([[0.0], np.cumsum(self.node_seconds[u])])[list(m.positions)]
        out = lat[None, :] - lat[:, None]
        out[np.tril_indices_from(out, -1)] = INF
        return out

    def _compute(self, run: _Run, w: int) -> np.ndarray:
        """Seconds node ``w`` computes each part [a, b) of ``run``, halo included (inf where
        a >= b): decompose's price of a part with no link, once per profile class."""
        cls, factor = self._class[w]
        if cls not in run.base:
            seconds = dict(zip(self.model.node_names, self.node_seconds[cls]))
            run.base[cls] = part_seconds(run.rows, Worker(self.model.nodes[cls], seconds))
        return factor * run.base[cls]

    def _part_seconds(self, run: _Run, u: int, w: int) -> np.ndarray:
        """A part on ``w`` as the coordinator ``u`` sees it: its compute, and for another node
        the source rows sent and the rows sent back (the coordinator's processor moves them
        too, ``wire_s_per_byte``)."""
        m, total = self.model, self._compute(run, w)
        if w != u:  # inf stays where a >= b
            total = total + 2 * m.delay[u, w] + run.moved * (m.per_byte[u, w] + self.wire[u])
        return total


def _moved(rows: RowCosts) -> np.ndarray:
    h = rows.height
    src = rows.end[rows.source][None, :] - rows.start[rows.source][:, None]
    out = np.arange(h + 1)[None, :] - np.arange(h + 1)[:, None]
    return (np.maximum(src, 0) * rows.src_row_bytes
            + np.maximum(out, 0) * rows.out_row_bytes).astype(float)


def _profile_classes(seconds: np.ndarray) -> list[tuple[int, float]]:
    """Per node: (the first node whose profile it scales, the factor): nodes given by a
    speed of one reference share one table per run."""
    out: list[tuple[int, float]] = []
    for i, row in enumerate(seconds):
        for j in range(i):
            ref = seconds[j]
            if out[j][0] == j and ref.sum() > 0:
                factor = row.sum() / ref.sum()
                if np.allclose(row, factor * ref, rtol=1e-9, atol=0.0):
                    out.append((j, float(factor)))
                    break
        else:
            out.append((i, 1.0))
    return out

