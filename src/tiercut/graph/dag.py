"""The Graph: a model as a DAG of nodes, each one traced op or module call.

A Graph is plain data (names, shapes, bytes, FLOPs) that planners and profiles read; the
executable fx module it came from rides along in ``Graph.module`` for the splitter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import GraphError

INPUT_OP = "input"


@dataclass(frozen=True)
class TensorMeta:
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"
    nbytes: int


@dataclass(frozen=True)
class Node:
    """One op. ``inputs`` name the nodes whose values it reads (constants are not listed)."""

    name: str
    op: str  # normalised kind: "conv2d", "linear", "matmul", "add", "input", ...
    target: str  # what fx called: a module path, a function or method name
    inputs: tuple[str, ...]
    outputs: tuple[TensorMeta, ...]  # every tensor in the node's value, flattened
    output_bytes: int  # bytes to send the value over a link (tensors, plus 8 per Python int)
    param_bytes: int = 0
    flops: int = 0


@dataclass
class Graph:
    name: str
    nodes: dict[str, Node]  # in topological order
    outputs: tuple[str, ...]  # nodes whose values make up the model's output
    module: Any = field(default=None, repr=False, compare=False)  # torch.fx.GraphModule
    method: str = "fx"  # how it was captured: "fx" or "export"
    dead_removed: int = 0  # nodes with no path to an output, erased at capture
    # the eager output's pytree structure (an OrderedDict, a ModelOutput, nested tuples)
    output_spec: Any = field(default=None, repr=False, compare=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes.values() if n.op == INPUT_OP)

    @property
    def compute_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.op != INPUT_OP]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for src in node.inputs:
                users[src].append(node.name)
        return users

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes.values())

    @property
    def param_bytes(self) -> int:
        return sum(n.param_bytes for n in self.nodes.values())

    @property
    def input_bytes(self) -> int:
        return sum(n.output_bytes for n in self.nodes.values() if n.op == INPUT_OP)

    def lint(self) -> None:
        """Check the invariants every planner relies on; raise GraphError naming the bad node."""
        seen: set[str] = set()
        for node in self.nodes.values():
            if node.name in seen:
                raise GraphError(f"node name {node.name!r} appears twice")
            for src in node.inputs:
                if src not in self.nodes:
                    raise GraphError(
                        f"node {node.name!r} reads unknown input {src!r}; every input must name "
                        "a node of the graph"
                    )
                if src not in seen:
                    kind = "itself" if src == node.name else "a node that comes later"
                    raise GraphError(
                        f"node {node.name!r} reads {src!r}, {kind}: the graph has a cycle or "
                        "is not in topological order"
                    )
            if node.op == INPUT_OP and node.inputs:
                raise GraphError(f"input node {node.name!r} must not read other nodes")
            for label, value in (("output_bytes", node.output_bytes), ("param_bytes", node.param_bytes),
                                 ("flops", node.flops)):
                if value < 0:
                    raise GraphError(f"node {node.name!r} has negative {label} {value}")
            seen.add(node.name)
        for out in self.outputs:
            if out not in self.nodes:
                raise GraphError(f"graph output {out!r} is not a node of the graph")
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no outputs")
