"""ONNX in: an ONNX file read and checked (``load``), as a tiercut Graph (``graph``), profiled
by ONNX Runtime into a Profile (``profile``) and cut into stages that ONNX Runtime runs
(``split``), so an ONNX model is planned and served without torch code for it.

Imports numpy, onnx, onnxruntime, ``tiercut.graph``, ``tiercut.measure`` and ``tiercut.errors``.
"""
from .graph import OnnxSource, example_feed, graph_from_onnx
from .load import MAX_OPSET, MIN_OPSET, OnnxModelError, load_onnx

__all__ = ["MAX_OPSET", "MIN_OPSET", "OnnxModelError", "OnnxSource", "example_feed",
           "graph_from_onnx", "load_onnx"]
