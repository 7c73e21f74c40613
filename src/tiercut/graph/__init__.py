"""The model as data: the DAG (``dag``), its capture from PyTorch (``trace``), FLOP counts
(``flops``) and the surgery that turns a node-to-stage assignment into stages (``split``).

Imports only ``tiercut.errors`` (and torch); everything above it builds on these nouns.
"""
from .dag import INPUT_OP, Graph, Node, TensorMeta

__all__ = ["INPUT_OP", "Graph", "Node", "TensorMeta"]
