"""Per-node latency on this host: run the traced graph node by node and time each call.

Node timings and whole-model timings are taken in alternation, repeat after repeat, so both see
the same machine (frequency, other load); medians and interquartile ranges summarise them.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn

from .alloc import keep_freed_memory
from ..graph.dag import Graph
from .host import host_facts
from .profile import Profile
from ..graph.trace import trace

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class ProfileSettings:
    threads: int | None = None  # None: torch's default for this host
    repeat: int = 20
    warmup: int = 3

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


def profile_model(model: nn.Module, example_inputs: Any, name: str | None = None,
                  settings: ProfileSettings = ProfileSettings(),
                  progress: Progress | None = None) -> Profile:
    """Trace ``model`` and measure it on this host."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    graph = trace(model, inputs, name=name)
    return profile_graph(graph, model, inputs, settings, progress)


def profile_graph(graph: Graph, model: nn.Module, inputs: tuple, settings: ProfileSettings,
                  progress: Progress | None = None) -> Profile:
    keep_freed_memory()
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        runner = _NodeRunner(graph.module, set(graph.nodes))
        node_times: dict[str, list[float]] = {n: [] for n in graph.nodes}
        model_times: list[float] = []
        total = settings.warmup + settings.repeat
        with torch.inference_mode():
            for r in range(total):
                t0 = time.perf_counter()
                model(*inputs)
                whole = time.perf_counter() - t0
                per_node = runner.run(inputs)
                if r >= settings.warmup:
                    model_times.append(whole)
                    for name, seconds in per_node.items():
                        node_times[name].append(seconds)
                if progress:
                    progress(r + 1, total)
        host = host_facts()
    finally:
        torch.set_num_threads(previous_threads)
    batch = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 1
    return Profile.from_graph(
        graph,
        latency_s={n: median(t) for n, t in node_times.items()},
        spread_s={n: iqr(t) for n, t in node_times.items()},
        host=host, model_latency_s=median(model_times),
        model_latency_spread_s=iqr(model_times), batch=batch,
        settings={"threads": host["threads"], "repeat": settings.repeat,
                  "warmup": settings.warmup, "capture": graph.method},
    )


def median(xs: list[float]) -> float:
    """Median of repeated timings (0 for none): what a profile records per node."""
    return statistics.median(xs) if xs else 0.0


def iqr(xs: list[float]) -> float:
    """Interquartile range of repeated timings (0 for fewer than 2): a profile's spread."""
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[2] - q[0]


class _NodeRunner:
    """Runs an fx graph node by node, timing only the op call itself.

    Fetching arguments happens outside the timed region, so the per-node sum is not inflated
    by the interpreter; values are dropped after their last use, as eager execution does.
    """

    def __init__(self, gm: fx.GraphModule, timed: set[str]) -> None:
        self.gm = gm
        modules = dict(gm.named_modules())
        self.steps: list[tuple[fx.Node, Callable | str | None, bool]] = []
        last_use: dict[str, fx.Node] = {}
        for node in gm.graph.nodes:
            for src in node.all_input_nodes:
                last_use[src.name] = node
            fn: Callable | str | None
            if node.op == "call_module":
                fn = modules[node.target]
            elif node.op in ("call_function", "call_method"):
                fn = node.target
            else:
                fn = None
            self.steps.append((node, fn, node.name in timed and node.op != "placeholder"))
        self.free_after: dict[str, list[str]] = {}
        for value, user in last_use.items():
            self.free_after.setdefault(user.name, []).append(value)

    def run(self, inputs: tuple) -> dict[str, float]:
        env: dict[str, Any] = {}
        times: dict[str, float] = {}
        feed = iter(inputs)
        clock = time.perf_counter
        for node, fn, timed in self.steps:
            if node.op == "placeholder":
                env[node.name] = next(feed)
                continue
            if node.op == "output":
                break
            if node.op == "get_attr":
                env[node.name] = _fetch_attr(self.gm, node.target)
                continue
            args = fx.node.map_arg(node.args, lambda n: env[n.name])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
            if node.op == "call_method":
                self_obj, *rest = args
                call, args = getattr(self_obj, fn), tuple(rest)
            else:
                call = fn
            t0 = clock()
            env[node.name] = call(*args, **kwargs)
            if timed:
                times[node.name] = clock() - t0
            for value in self.free_after.get(node.name, ()):
                env.pop(value, None)
        return times


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
