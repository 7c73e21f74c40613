"""ONNX in: an ONNX file read and checked (``load``), as a tiercut Graph (``graph``), profiled
by ONNX Runtime into a Profile (``profile``) and cut into stages that ONNX Runtime runs
(``split``), so an ONNX model is planned and served without torch code for it.

Imports numpy, onnx, onnxruntime, ``tiercut.graph``, ``tiercut.measure`` and ``tiercut.errors``.
"""
from .graph import OnnxSource, example_feed, graph_from_onnx
from .load import MAX_OPSET, MIN_OPSET, OnnxModelError, load_onnx
from .profile import profile_onnx
from .split import OnnxGraphStage, run_onnx_stages, run_whole, split_onnx

__all__ = ["MAX_OPSET", "MIN_OPSET", "OnnxGraphStage", "OnnxModelError", "OnnxSource",
           "example_feed", "graph_from_onnx", "load_onnx", "profile_onnx", "run_onnx_stages",
           "run_whole", "split_onnx"]
