"""Does tiercut take this model? Capture it, split it at the cuts a planner might choose, and
compare every split with the whole model (``tiercut check``).

May import tiercut.graph, tiercut.measure, tiercut.planner and tiercut.onnxgraph (and torch).
"""
from tiercut.modelcheck.check import (CheckReport, CutResult, candidate_cuts, check_model,
                                      compare_outputs)
from tiercut.modelcheck.onnx_check import check_onnx
from tiercut.modelcheck.report import render

__all__ = ["CheckReport", "CutResult", "candidate_cuts", "check_model", "check_onnx",
           "compare_outputs", "render"]
