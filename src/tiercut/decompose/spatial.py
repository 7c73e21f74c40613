"""Spatial tiling of a fused run of nodes: each part computes a rectangle of the run's output
from the rectangle of the run's input that its receptive field covers (DeepThings' fused tile
partitioning, for any traced graph).

A run is a contiguous range of the graph's topological order whose nodes all have a rule
(``rules.py``), that reads one tensor from outside (its *source*, (N, C, H, W)) and whose last
node is the only one read after it. For a part (a rectangle of the last node's output) the
rectangles every node must compute are found backwards: a node computes the hull of what its
consumers in the run read of it. The part then runs forwards on the source's rectangle, each
windowed node on its input's rectangle padded explicitly where it reaches past the image.

``Part.halo_rows`` and ``Part.area(node)`` say what a part costs: the source rows it is sent
(halo included) and, per node, how much of that node's output it computes (the parts' areas
add up to more than the node's where they overlap). The planner (``planner.py``) counts both; nothing here decides where a part
runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..graph.dag import Graph
from .rules import DecomposeError, Rule, constant, rule_for

Rect = tuple[tuple[int, int], tuple[int, int]]  # ((row_lo, row_hi), (col_lo, col_hi)), half-open


@dataclass(frozen=True)
class Part:
    """One part of a run: the output rectangle it computes, the source rectangle it reads,
    and the rectangle of every node of the run it computes on the way."""

    out: Rect
    source: Rect
    rects: dict[str, Rect]

    @property
    def halo_rows(self) -> int:
        return self.source[0][1] - self.source[0][0]

    def area(self, name: str) -> int:
        (r0, r1), (c0, c1) = self.rects[name]
        return (r1 - r0) * (c1 - c0)


class SpatialRun:
    """The nodes ``first`` .. ``last`` (graph names, topological order) as a tileable run."""

    def __init__(self, graph: Graph, first: str, last: str) -> None:
        if graph.module is None:
            raise DecomposeError(f"graph {graph.name!r} has no module (loaded from a profile); "
                                 "trace the model to decompose it")
        compute = [n.name for n in graph.compute_nodes]
        for end in (first, last):
            if end not in compute:
                raise DecomposeError(f"run end {end!r} is not a node of {graph.name!r}; nodes "
                                     f"are e.g. {compute[:5]}")
        i, j = compute.index(first), compute.index(last)
        if i > j:
            raise DecomposeError(f"run {first!r} .. {last!r}: {first!r} comes after {last!r}")
        self.graph, self.names = graph, tuple(compute[i:j + 1])
        gm: fx.GraphModule = graph.module
        fx_nodes = {n.name: n for n in gm.graph.nodes}
        self.rules: dict[str, Rule] = {}
        for v in self.names:
            self.rules[v] = rule_for(fx_nodes[v], gm, graph[v].op)
            shape = graph[v].outputs[0].shape if graph[v].outputs else ()
            if len(shape) != 4:
                raise DecomposeError(f"node {v!r} ({graph[v].op}) gives shape {shape}: a tiled "
                                     "run holds (N, C, H, W) tensors only")
        self.shape = {n.name: n.outputs[0].shape for n in graph if n.outputs}
        inside = set(self.names)
        # parameters a functional op reads (F.conv2d's weight) go to every part whole
        self.constants = {u.name: c for v in self.names for u in self.rules[v].inputs
                          if (c := constant(u, gm)) is not None}
        outside = sorted({u.name for v in self.names for u in self.rules[v].inputs
                          if u.name not in inside and u.name not in self.constants})
        if len(outside) != 1 or len(self.shape.get(outside[0], ())) != 4:
            raise DecomposeError(f"run {first!r} .. {last!r} reads {outside} from outside it; a "
                                 "tiled run reads one (N, C, H, W) tensor (start it later or "
                                 "end it sooner)")
        self.source = outside[0]
        users = graph.consumers()
        leaks = [v for v in self.names[:-1]
                 if v in graph.outputs or any(u not in inside for u in users[v])]
        if leaks:
            raise DecomposeError(f"run {first!r} .. {last!r}: {leaks[:3]} are read after the "
                                 f"run; only its last node {last!r} may be (end the run there)")
        self.last = last

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape[self.last]

    # ---- the parts ---------------------------------------------------------------------
    def part(self, out: Rect) -> Part:
        """The part computing ``out`` of the last node's output."""
        (r0, r1), (c0, c1) = out
        _, _, h, w = self.out_shape
        if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
            raise DecomposeError(f"part {out} is not a non-empty rectangle of {self.last!r}'s "
                                 f"{h}x{w} output")
        need: dict[str, list[int]] = {self.last: [r0, r1, c0, c1]}
        for v in reversed(self.names):
            if v not in need:  # dead inside the run: computes nothing
                continue
            rect = need[v]
            rule = self.rules[v]
            for u in rule.inputs:
                if u.name in self.constants:
                    continue
                _, _, hu, wu = self.shape[u.name]
                if rule.window is None:
                    want = list(rect)
                else:
                    (a, b), (c, d) = (rule.window.needs(2, rect[0], rect[1]),
                                      rule.window.needs(3, rect[2], rect[3]))
                    want = [max(0, a), min(hu, b), max(0, c), min(wu, d)]
                have = need.get(u.name)
                need[u.name] = want if have is None else [min(have[0], want[0]),
                                                          max(have[1], want[1]),
                                                          min(have[2], want[2]),
                                                          max(have[3], want[3])]
        rects = {v: ((r[0], r[1]), (r[2], r[3])) for v, r in need.items()}
        return Part(out, rects[self.source], rects)

    def row_parts(self, bounds: Sequence[int]) -> list[Part]:
        """Parts by rows of the output: ``bounds`` = 0 < b1 < ... < H, the rows where a part
        ends; each part spans the whole width."""
        _, _, h, w = self.out_shape
        edges = [0, *bounds, h]
        if any(a >= b for a, b in zip(edges, edges[1:])):
            raise DecomposeError(f"row bounds {list(bounds)} must rise strictly within 1..{h - 1}")
        return [self.part(((a, b), (0, w))) for a, b in zip(edges, edges[1:])]

    def grid_parts(self, rows: int, cols: int) -> list[Part]:
        """rows x cols parts of (nearly) equal size, row by row."""
        _, _, h, w = self.out_shape
        if not (1 <= rows <= h and 1 <= cols <= w):
            raise DecomposeError(f"a {rows}x{cols} grid does not fit {self.last!r}'s {h}x{w}")
        rs = [round(h * k / rows) for k in range(rows + 1)]
        cs = [round(w * k / cols) for k in range(cols + 1)]
        return [self.part(((rs[i], rs[i + 1]), (cs[j], cs[j + 1])))
                for i in range(rows) for j in range(cols)]

    # ---- running a part ----------------------------------------------------------------
    @torch.no_grad()  # inference: the parts keep no autograd history
    def run_part(self, part: Part, source: torch.Tensor) -> torch.Tensor:
        """The part's output rectangle from the source's rectangle ``part.source`` (the tensor
        a part's host receives: the source cropped to it)."""
        (sr0, sr1), (sc0, sc1) = part.source
        want = (sr1 - sr0, sc1 - sc0)
        if source.dim() != 4 or tuple(source.shape[2:]) != want:
            raise DecomposeError(f"part of {self.last!r} takes the source {self.source!r} cropped"
                                 f" to {want[0]}x{want[1]}; got shape {tuple(source.shape)}")
        values = {self.source: source}
        for v in self.names:
            if v not in part.rects:
                continue
            rule = self.rules[v]
            args = [self._input(values, part, u.name, v, rule) for u in rule.inputs]
            values[v] = rule.run(*args)
        return values[self.last]

    def _input(self, values: dict, part: Part, u: str, v: str, rule: Rule) -> torch.Tensor:
        """``u``'s computed rectangle, cropped (and padded) to what ``v`` reads of it."""
        if u in self.constants:
            return self.constants[u]
        (ur0, ur1), (uc0, uc1) = part.rects[u]
        (vr0, vr1), (vc0, vc1) = part.rects[v]
        x = values[u]
        # contiguous: a kernel may take another path (and round otherwise) on a strided view
        if rule.window is None:
            return x[:, :, vr0 - ur0:vr1 - ur0, vc0 - uc0:vc1 - uc0].contiguous()
        (a, b), (c, d) = rule.window.needs(2, vr0, vr1), rule.window.needs(3, vc0, vc1)
        _, _, hu, wu = self.shape[u]
        crop = x[:, :, max(0, a) - ur0:min(hu, b) - ur0, max(0, c) - uc0:min(wu, d) - uc0]
        pads = (max(0, -c), max(0, d - wu), max(0, -a), max(0, b - hu))
        if any(pads):
            return F.pad(crop, pads, value=rule.window.fill)
        return crop.contiguous()

    def run(self, source: torch.Tensor, parts: Sequence[Part]) -> torch.Tensor:
        """The run's whole output, each part computed on its own and stitched (for checks: a
        runtime sends each part's source to its host and stitches what comes back)."""
        out = None
        covered = torch.zeros(self.out_shape[2:], dtype=torch.bool)
        for p in parts:
            (r0, r1), (c0, c1) = p.out
            (sr0, sr1), (sc0, sc1) = p.source
            y = self.run_part(p, source[:, :, sr0:sr1, sc0:sc1])
            if out is None:
                out = y.new_empty((y.shape[0], y.shape[1], *self.out_shape[2:]))
            out[:, :, r0:r1, c0:c1] = y
            covered[r0:r1, c0:c1] = True
        if not bool(covered.all()):
            raise DecomposeError(f"the parts leave {int((~covered).sum())} output positions of "
                                 f"{self.last!r} uncovered")
        return out


__all__ = ["DecomposeError", "Part", "Rect", "SpatialRun"]
