"""The model check for an ONNX file: read it as a Graph, profile it with ONNX Runtime, cut it
at the same candidate cuts as a torch model, and compare each split, run by ONNX Runtime,
with the whole model run by ONNX Runtime."""
from __future__ import annotations

import math
import time

import torch

from tiercut.measure.profiler import ProfileSettings
from tiercut.modelcheck.check import CheckReport, CutResult, candidate_cuts, compare_outputs
from tiercut.onnxgraph import (example_feed, graph_from_onnx, profile_onnx, run_onnx_stages,
                               run_whole, split_onnx)


def check_onnx(path: str, max_cuts: int = 12, tol: float = 1e-5, input_shapes=None,
               settings: ProfileSettings = ProfileSettings(repeat=1, warmup=1)) -> CheckReport:
    """``check_model`` for an ONNX file. A file tiercut cannot read is the report's error."""
    if not (isinstance(max_cuts, int) and max_cuts >= 1):
        raise ValueError(f"max_cuts={max_cuts!r}: accepted is a whole number >= 1")
    report = CheckReport(str(path))
    t0 = time.perf_counter()
    try:
        graph = graph_from_onnx(str(path), input_shapes)
    except Exception as exc:  # the report says why; the caller decides the exit status
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    report.capture_s = time.perf_counter() - t0
    report.method, report.nodes, report.graph = "onnx", len(graph.compute_nodes), graph
    feed = example_feed(graph.module.model)
    inputs = list(feed.values())  # in the model's input order, as graph.inputs
    whole = [torch.from_numpy(v) for v in run_whole(graph, *inputs)]
    t0 = time.perf_counter()
    try:
        profile = profile_onnx(graph, settings)
    except Exception as exc:
        report.error = f"profiling failed: {type(exc).__name__}: {exc}"
        return report
    report.profile_s = time.perf_counter() - t0
    for label, assignment in candidate_cuts(graph, profile, max_cuts):
        on_device = sum(1 for v in assignment.values() if v == 0)
        try:
            got = run_onnx_stages(graph, split_onnx(graph, assignment), *inputs)
        except Exception as exc:
            report.cuts.append(CutResult(label, on_device, "failed", math.inf,
                                         f"{type(exc).__name__}: {exc}"))
            continue
        report.cuts.append(compare_outputs(whole, [torch.from_numpy(v) for v in got], label,
                                           on_device, tol))
    return report
