"""The model check: capture, candidate cuts, split against whole.

Candidate cuts are of two kinds, both two-stage splits (device, then edge):
* the planner's: every plan of the device/edge decision table over 0.1 Mbit/s to 10 Gbit/s,
  with the profile just measured, the device at 0.1x and the edge at 1x (the cuts a planner
  would choose for some link);
* evenly spaced prefixes of the graph's topological order, so that cuts the table never picks
  (inside attention blocks, before a head) are tried too.
A cut is "exact" when every output equals the whole model's bit for bit, "close" when every
tensor is within ``tol`` relative (a stage boundary can change the order of a floating-point
reduction), and failed otherwise, with the exception or the largest difference named.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch.utils import _pytree as pytree

from tiercut.graph.split import run_stages, split
from tiercut.graph.trace import trace
from tiercut.measure.predict import scale_profile
from tiercut.measure.profiler import ProfileSettings, profile_graph
from tiercut.planner import Host, Link, Scenario
from tiercut.planner.table import build_table


@dataclass(frozen=True)
class CutResult:
    label: str  # how the cut was found and where it is
    device_nodes: int  # nodes on the first stage
    status: str  # "exact", "close" or "failed"
    max_rel: float = 0.0
    error: str = ""  # what failed, naming the stage, node or output


@dataclass
class CheckReport:
    model: str
    method: str = ""  # fx or export; "" when capture failed
    nodes: int = 0
    capture_s: float = 0.0
    profile_s: float = 0.0
    error: str = ""  # capture failed: why
    cuts: list[CutResult] = field(default_factory=list)
    graph: Any = field(default=None, repr=False)  # the captured Graph, for a caller to reuse

    @property
    def ok(self) -> bool:
        return not self.error and all(c.status != "failed" for c in self.cuts)


def check_model(model: torch.nn.Module, example_inputs: Any, name: str,
                leaf_modules: Sequence = (), max_cuts: int = 12, tol: float = 1e-5,
                settings: ProfileSettings = ProfileSettings(repeat=1, warmup=1)) -> CheckReport:
    """Capture ``model``, split it at its candidate cuts and compare each with the whole."""
    if not (isinstance(max_cuts, int) and max_cuts >= 1):
        raise ValueError(f"max_cuts={max_cuts!r}: accepted is a whole number >= 1")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol={tol!r}: accepted is a finite number >= 0")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) \
        else tuple(example_inputs)
    report = CheckReport(name)
    t0 = time.perf_counter()
    try:
        graph = trace(model, inputs, name=name, leaf_modules=leaf_modules)
    except Exception as exc:  # the report says why; the caller decides the exit status
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    report.capture_s = time.perf_counter() - t0
    report.method, report.nodes, report.graph = graph.method, len(graph.compute_nodes), graph
    with torch.inference_mode():
        whole = model(*inputs)
    t0 = time.perf_counter()
    try:
        profile = profile_graph(graph, model, inputs, settings)
    except Exception as exc:
        report.error = f"profiling failed: {type(exc).__name__}: {exc}"
        return report
    report.profile_s = time.perf_counter() - t0
    for label, assignment in candidate_cuts(graph, profile, max_cuts):
        report.cuts.append(_try_cut(graph, assignment, inputs, whole, label, tol))
    return report


def candidate_cuts(graph, profile, max_cuts: int) -> list[tuple[str, dict[str, int]]]:
    """(label, node -> stage) for the planner's cuts, then evenly spaced prefixes, deduplicated,
    at most ``max_cuts`` (the planner's first)."""
    order = [n.name for n in graph.compute_nodes]
    seen, out = set(), []

    def add(label: str, first: set[str]) -> None:
        key = frozenset(first)
        if key not in seen and len(out) < max_cuts:
            seen.add(key)
            out.append((label, {n: 0 if n in first else 1 for n in order}))

    for label, first in _planner_cuts(profile):
        add(label, first)
    steps = max(1, max_cuts - len(out))
    for i in range(1, steps + 1):
        k = round(i * len(order) / (steps + 1))
        if 0 < k < len(order):
            add(f"prefix after {order[k - 1]}", set(order[:k]))
    return out


def _planner_cuts(profile) -> list[tuple[str, set[str]]]:
    sc = Scenario(("device", "edge"),
                  (Host("device", "device", scale_profile(profile, 0.1, "device")),
                   Host("edge", "edge", scale_profile(profile, 1.0, "edge"))),
                  {("device", "edge"): Link(10e6, 0.005)})
    table = build_table(sc, low_bps=1e5, high_bps=1e10)
    cuts = []
    for e in table.entries:
        first = {n for n, t in e.plan.assignment.items() if t == "device"}
        cuts.append((f"planner {e.plan.placement()}", first))
    return cuts


def _try_cut(graph, assignment, inputs, whole, label: str, tol: float) -> CutResult:
    on_device = sum(1 for v in assignment.values() if v == 0)
    try:
        stages = split(graph, assignment)
        with torch.inference_mode():
            got = run_stages(graph, stages, *inputs)
    except Exception as exc:
        return CutResult(label, on_device, "failed", math.inf, f"{type(exc).__name__}: {exc}")
    return compare_outputs(whole, got, label, on_device, tol)


def compare_outputs(whole, got, label: str, on_device: int, tol: float) -> CutResult:
    want_leaves, want_spec = pytree.tree_flatten(whole)
    got_leaves, got_spec = pytree.tree_flatten(got)
    if type(got) is not type(whole):
        return CutResult(label, on_device, "failed", math.inf,
                         f"the output is a {type(got).__name__}, the model returns a "
                         f"{type(whole).__name__}")
    if want_spec != got_spec:
        return CutResult(label, on_device, "failed", math.inf,
                         f"the output's structure differs: {got_spec} against {want_spec}")
    worst, exact = 0.0, True
    for i, (w, g) in enumerate(zip(want_leaves, got_leaves)):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor) or g.shape != w.shape or g.dtype != w.dtype:
                return CutResult(label, on_device, "failed", math.inf,
                                 f"output {i}: {_describe(g)} where the model gives "
                                 f"{_describe(w)}")
            if torch.equal(g, w):
                continue
            exact = False
            if not w.is_floating_point():
                return CutResult(label, on_device, "failed", math.inf,
                                 f"output {i}: integer values differ")
            scale = w.abs().max().item() or 1.0
            worst = max(worst, (g - w).abs().max().item() / scale)
        elif g != w:
            return CutResult(label, on_device, "failed", math.inf,
                             f"output {i}: {g!r} where the model gives {w!r}")
    if exact:
        return CutResult(label, on_device, "exact")
    if worst <= tol:
        return CutResult(label, on_device, "close", worst)
    return CutResult(label, on_device, "failed", worst,
                     f"largest difference {worst:.2e} of the output's scale, over {tol:g}")


def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor {tuple(v.shape)}"
    return f"a {type(v).__name__}"
