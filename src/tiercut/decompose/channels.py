"""Splitting one layer by its output channels (MoDNN's and D3's other division): each part holds
a slice of the weights, reads the whole input and computes its channels; the parts' outputs
are concatenated along dim 1.

A ``conv2d`` (groups = 1) or ``linear`` node divides, with the nodes right after it that act
per channel (eval-mode batch norm, element-wise activations): each part runs its slice of them
too, so a part sends back finished channels. Each output channel is the same dot products as
in the whole layer; the kernel may sum them in another order for a narrower weight, so parts
are held to 1e-5 relative (batch norm and activations are then exact on what they get).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..graph.dag import Graph
from .rules import DecomposeError, rule_for


@dataclass(frozen=True)
class ChannelPart:
    lo: int
    hi: int  # output channels [lo, hi)


class ChannelSplit:
    """Node ``layer`` (conv2d or linear) and the per-channel nodes that follow it up to
    ``last`` (``layer`` itself when None), divided by output channels."""

    def __init__(self, graph: Graph, layer: str, last: str | None = None) -> None:
        if graph.module is None:
            raise DecomposeError(f"graph {graph.name!r} has no module; trace the model")
        gm: fx.GraphModule = graph.module
        fx_nodes = {n.name: n for n in gm.graph.nodes}
        compute = [n.name for n in graph.compute_nodes]
        if layer not in compute:
            raise DecomposeError(f"node {layer!r} is not in {graph.name!r}; e.g. {compute[:5]}")
        node = fx_nodes[layer]
        m = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros":
                raise DecomposeError(f"node {layer!r} ({graph[layer].op}) cannot be split by "
                                     f"output channels: groups={m.groups}, padding_mode="
                                     f"{m.padding_mode!r} (groups=1 with zeros padding is)")
        elif not isinstance(m, nn.Linear):
            raise DecomposeError(f"node {layer!r} ({graph[layer].op}) cannot be split by output "
                                 "channels: only conv2d and linear layers hold per-channel "
                                 "weights")
        self.graph, self.layer, self.module = graph, layer, m
        self.channels = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        end = compute.index(last if last is not None else layer)
        if end < compute.index(layer):
            raise DecomposeError(f"{last!r} comes before {layer!r}")
        self.after = []  # (module or callable, is_batch_norm) per node after the layer
        users = graph.consumers()
        prev = layer
        for v in compute[compute.index(layer) + 1:end + 1]:
            fv = fx_nodes[v]
            if [u.name for u in fv.all_input_nodes] != [prev] or len(users[prev]) != 1:
                raise DecomposeError(f"node {v!r} does not read {prev!r} alone, or {prev!r} has "
                                     "other readers: a channel split runs a chain after its layer")
            sub = gm.get_submodule(str(fv.target)) if fv.op == "call_module" else None
            if isinstance(sub, nn.BatchNorm2d | nn.BatchNorm1d) and not sub.training:
                self.after.append((sub, True))
            else:
                rule = rule_for(fv, gm, graph[v].op)  # element-wise or refused
                if rule.window is not None or len(rule.inputs) != 1:
                    raise DecomposeError(f"node {v!r} ({graph[v].op}) does not act per channel")
                self.after.append((rule.run, False))
            prev = v
        self.last = prev

    def parts(self, sizes: Sequence[int]) -> list[ChannelPart]:
        """Parts of ``sizes`` channels each (they must add up to the layer's channels)."""
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes) or \
                sum(sizes) != self.channels:
            raise DecomposeError(f"channel sizes {list(sizes)} must be whole numbers >= 1 adding "
                                 f"up to {self.layer!r}'s {self.channels} output channels")
        edges = [0]
        for s in sizes:
            edges.append(edges[-1] + s)
        return [ChannelPart(a, b) for a, b in zip(edges, edges[1:])]

    @torch.no_grad()  # inference: the parts keep no autograd history
    def run_part(self, part: ChannelPart, x: torch.Tensor) -> torch.Tensor:
        """Channels [lo, hi) of the run's output, from the layer's whole input ``x``."""
        m, lo, hi = self.module, part.lo, part.hi
        bias = m.bias[lo:hi] if m.bias is not None else None
        if isinstance(m, nn.Conv2d):
            y = F.conv2d(x, m.weight[lo:hi], bias, m.stride, m.padding, m.dilation, 1)
        else:
            y = F.linear(x, m.weight[lo:hi], bias)
        for op, batch_norm in self.after:
            if batch_norm:
                y = F.batch_norm(y, op.running_mean[lo:hi], op.running_var[lo:hi],
                                 op.weight[lo:hi] if op.weight is not None else None,
                                 op.bias[lo:hi] if op.bias is not None else None,
                                 False, 0.0, op.eps)
            else:
                y = op(y)
        return y

    def run(self, x: torch.Tensor, parts: Sequence[ChannelPart]) -> torch.Tensor:
        dim = 1 if x.dim() == 4 else x.dim() - 1
        return torch.cat([self.run_part(p, x) for p in parts], dim)
