"""Per-node seconds of an ONNX model from ONNX Runtime's own profiler, and whole-model seconds
measured apart, into a tiercut Profile (``tiercut-profile/1``) that the planner plans on.

How, and why this way: the model runs as tiercut's stages run it (every ORT optimization), so
the per-node figures add up to what ORT really spends. With profiling on, ORT records one event
per executed kernel and run; the kernels are those of the *optimized* graph, whose nodes are
fusions of ours (FusedConv keeps the Conv's name, an NCHWc Conv is named after the value it
writes, reorders are new). Each kernel is mapped back to one graph node: by name, else by the
value it writes, else to its nearest mapped neighbour (reorders); a graph node that vanished
into a fusion shares its group's time in proportion to FLOPs (+1). Timing single-node
subgraphs instead would lose the fusions and pay one ``run`` call per node, so its sum
overshoots whole-model time on small nodes.

What the profiler times is not quite what a plain run costs: it adds its own cost to each
kernel event (it formats the event's arguments inside the timed window, a few microseconds,
which doubles the kernels' sum on models of many tiny nodes), and it leaves out the executor's
work between kernels. So profiled and plain runs alternate, repeat after repeat, after warm-up,
and each repeat's kernels are evened to that repeat's plain run: the difference is spread
evenly over the kernels (never below zero). The per-node seconds then add up to the measured
whole-model time, and the profiler decides only how it divides among the nodes; the kernels'
own sum is kept as ``settings["kernel_s"]``. Figures are medians (and interquartile ranges)
over repeats.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict, deque
from typing import Any, Callable, Mapping, Sequence

import onnx

from ..graph.dag import INPUT_OP, Graph
from ..measure.host import host_facts
from ..measure.profile import Profile
from ..measure.profiler import ProfileSettings, iqr, median
from .graph import OnnxSource, example_feed, graph_from_onnx
from .split import session

Progress = Callable[[int, int], None]  # (done, total)


def profile_onnx(model: str | os.PathLike | onnx.ModelProto | Graph,
                 settings: ProfileSettings = ProfileSettings(),
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 name: str | None = None, progress: Progress | None = None) -> Profile:
    """Measure an ONNX model (a path, a ModelProto, or a Graph from ``graph_from_onnx``) on
    this host with ONNX Runtime; one profile node per graph node.

    ``settings.threads`` sets ORT's intra-op threads (None: ORT's default), ``repeat`` and
    ``warmup`` the runs. ``input_shapes`` fixes symbolic input dimensions (see
    ``graph_from_onnx``). Raises OnnxModelError for files tiercut cannot use.
    """
    graph = model if isinstance(model, Graph) else graph_from_onnx(
        str(model) if isinstance(model, os.PathLike) else model, input_shapes, name)
    source: OnnxSource = graph.module
    feed = example_feed(source.model)
    with tempfile.TemporaryDirectory(prefix="tiercut-ortprof-") as tmp:
        plain = session(source.model, settings.threads)
        optimized = os.path.join(tmp, "optimized.onnx")
        profiled = session(source.model, settings.threads,
                           profile_prefix=os.path.join(tmp, "run"), optimized_path=optimized)
        whole: list[float] = []
        total = settings.warmup + settings.repeat
        for r in range(total):
            t0 = time.perf_counter()
            plain.run(None, feed)
            seconds = time.perf_counter() - t0
            profiled.run(None, feed)
            if r >= settings.warmup:
                whole.append(seconds)
            if progress:
                progress(r + 1, total)
        with open(profiled.end_profiling()) as f:
            events = json.load(f)
        kernel_map = _kernel_map(graph, onnx.load(optimized, load_external_data=False))
    kernels = [per for _, per in _runs(events)[settings.warmup:]]
    node_times = _node_times(graph, kernel_map, kernels, whole)
    threads = settings.threads or plain.get_session_options().intra_op_num_threads
    host = {**host_facts(), "threads": threads or os.cpu_count(), "backend": "onnxruntime",
            "onnxruntime": _version("onnxruntime"), "onnx": onnx.__version__}
    batch = next(iter(feed.values())).shape[0] if feed and next(iter(feed.values())).ndim else 1
    return Profile.from_graph(
        graph, latency_s={n: median(t) for n, t in node_times.items()},
        spread_s={n: iqr(t) for n, t in node_times.items()}, host=host,
        model_latency_s=median(whole), model_latency_spread_s=iqr(whole), batch=int(batch),
        settings={"threads": host["threads"], "repeat": settings.repeat,
                  "warmup": settings.warmup, "capture": "onnx",
                  "timer": "onnxruntime profiler (ORT_ENABLE_ALL, no spinning), kernels "
                           "evened to the plain run",
                  "kernel_s": median([sum(k.values()) for k in kernels]),
                  "kernels": len(kernel_map)})


def _runs(events: list[dict[str, Any]]) -> list[tuple[float, dict[str, float]]]:
    """Per ``model_run`` event: its duration and the kernel seconds inside it, by kernel."""
    runs = sorted((e["ts"], e["ts"] + e["dur"], e["dur"]) for e in events
                  if e.get("name") == "model_run")
    kernels = sorted((e["ts"], e["name"][:-len("_kernel_time")], e["dur"]) for e in events
                     if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"))
    out, i = [], 0
    for start, end, dur in runs:
        per: dict[str, float] = defaultdict(float)
        while i < len(kernels) and kernels[i][0] < start:
            i += 1
        while i < len(kernels) and kernels[i][0] <= end:
            per[kernels[i][1]] += kernels[i][2] * 1e-6
            i += 1
        out.append((dur * 1e-6, dict(per)))
    return out


def _node_times(graph: Graph, kernel_map: Mapping[str, str], runs: list[dict[str, float]],
                whole: list[float]) -> dict[str, list[float]]:
    """Per graph node, its seconds in each repeat: the kernels mapped to it, evened to the
    plain run of that repeat (the difference spread over the kernels, none below zero)."""
    groups = _groups(graph, set(kernel_map.values()))
    times: dict[str, list[float]] = {n.name: [] for n in graph.compute_nodes}
    for kernels, run_s in zip(runs, whole):
        owned: dict[str, float] = defaultdict(float)
        for kernel, seconds in _evened(kernels, run_s).items():
            target = kernel_map.get(kernel) or next(iter(groups), None)
            if target is not None:
                owned[target] += seconds
        for name in times:
            times[name].append(0.0)
        for target, seconds in owned.items():
            members = groups.get(target, [target])
            weights = [graph.nodes[m].flops + 1 for m in members]
            for m, w in zip(members, weights):
                times[m][-1] += seconds * w / sum(weights)
    return times


def _evened(kernels: Mapping[str, float], run_s: float) -> dict[str, float]:
    """Kernel seconds that add up to ``run_s``: the difference is shared evenly (the executor's
    work between kernels when the run took longer; the profiler's cost per event, taken off
    each kernel but never below zero, when the kernels add up to more)."""
    out = dict(kernels)
    for _ in range(len(out) + 1):
        live = [k for k, v in out.items() if v > 0] if sum(out.values()) > run_s else list(out)
        gap = run_s - sum(out.values())
        if not live or abs(gap) <= 1e-12:
            break
        share = gap / len(live)
        for k in live:
            out[k] = max(0.0, out[k] + share)
    return out


def _groups(graph: Graph, targets: set[str]) -> dict[str, list[str]]:
    """Each kernel target with the graph nodes fused into it (those no kernel names): a fused
    node joins its nearest target, producers first, then consumers."""
    groups = {t: [t] for t in targets}
    if not targets:
        return groups
    users = graph.consumers()
    for node in graph.compute_nodes:
        if node.name in targets:
            continue
        seen, queue = {node.name}, deque([node.name])
        while queue:
            here = queue.popleft()
            if here in targets:
                groups[here].append(node.name)
                break
            for nb in (*graph.nodes[here].inputs, *users[here]):
                if nb not in seen and graph.nodes[nb].op != INPUT_OP:
                    seen.add(nb)
                    queue.append(nb)
        else:
            first = next(iter(sorted(targets)))
            groups[first].append(node.name)
    return groups


def _kernel_map(graph: Graph, optimized: onnx.ModelProto) -> dict[str, str]:
    """Optimized node (kernel) name -> the graph node its time goes to."""
    source: OnnxSource = graph.module
    compute = {n.name for n in graph.compute_nodes}
    producer = {o: n for n, i in source.node_index.items()
                for o in source.model.graph.node[i].output if o}
    mapped: dict[str, str] = {}
    nodes = list(optimized.graph.node)
    for node in nodes:
        hint = node.name.removesuffix("_nchwc")
        target = (node.name if node.name in compute else
                  next((producer[o] for o in node.output if o in producer), None) or
                  producer.get(hint))
        if target is not None:
            mapped[node.name] = target
    made = {o: n for n in nodes for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in nodes:
        for i in n.input:
            readers[i].append(n)
    for node in nodes:  # reorders and other new nodes: the nearest mapped neighbour
        if node.name in mapped:
            continue
        seen, queue = {node.name}, deque([node])
        while queue and node.name not in mapped:
            here = queue.popleft()
            near = [made[i] for i in here.input if i in made] + \
                   [r for o in here.output for r in readers[o]]
            for nb in near:
                if nb.name in mapped:
                    mapped[node.name] = mapped[nb.name]
                    break
                if nb.name not in seen:
                    seen.add(nb.name)
                    queue.append(nb)
    return mapped


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
