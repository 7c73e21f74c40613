"""Many unequal nodes, one stream of frames, run for real on this machine.

Each node is a tier server in its own process, pinned to a CPU and held to its own fraction
of one (``caps``: unequal nodes) where the machine allows it (root and cgroups). Frames arrive
at this process (the source and sink: it computes nothing) and every pair of hosts talks over
its own emulated link (a shaping proxy per ordered pair). Each node's speed is measured where
it runs, and the seconds its processor spends per byte a frame brings in or takes out
(``measure_wire``: a capped node receiving large frames computes more slowly meanwhile); the
cluster planner (``tiercut.cluster.plan_cluster``) sees the profile measured here scaled by
them. Three plans are then streamed, ``frames`` frames each with several in flight
(``runtime.replicas.ReplicaPipeline``): the planner's, the placement-blind chain over the
nodes in the order given, and the best single node. For each: predicted and measured frames
per second, and each server's utilisation. Every answer is checked against the whole model's,
bit for bit.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from ..cluster import (Cluster, ClusterError, ClusterNode, ClusterPlan, Medium,
                       marginal_nodes, plan_cluster)
from ..graph.trace import trace
from ..link.child import ProxySpec, proxies_in_child
from ..measure import cpucap
from ..measure.profiler import ProfileSettings, profile_model
from ..planner import Link
from ..zoo import entry
from .divided import free_ports
from .medium import measure_medium
from .run import measure_speeds

SOURCE = "source"  # this process: frames arrive and answers go here; it computes nothing
CAPS = (0.7, 0.15, 0.4, 0.25)  # unequal nodes, 1:4.7 (the order the chain baseline keeps)


@dataclass
class Streamed:
    """One plan streamed through the servers."""

    label: str  # "planned", "chain", "single"
    plan: ClusterPlan
    measured_fps: float  # steady: between the 20th and 80th percentile of the answers
    utilisation: dict[str, float]  # node -> compute seconds over the wall time
    frames: int
    measured_latency_s: float | None = None  # median, one frame in flight (``latency=True``)

    @property
    def predicted_fps(self) -> float:
        return self.plan.throughput_fps

    @property
    def error(self) -> float:
        return self.measured_fps / self.predicted_fps - 1.0


def stage_assignment(plan: ClusterPlan, order: Sequence[str]) -> dict[str, int]:
    """Graph node -> its stage (1..k; stage 0 is the source, which holds none)."""
    out = {}
    for j, (a, c) in enumerate(zip(plan.cuts, plan.cuts[1:]), start=1):
        for v in order[a:c]:
            out[v] = j
    return out


def spread(caps: Sequence[float], cpus: int = 2) -> list[int]:
    """A CPU for each node, the largest caps first onto the least loaded CPU."""
    load, out = [0.0] * cpus, [0] * len(caps)
    for i in sorted(range(len(caps)), key=lambda i: -caps[i]):
        c = min(range(cpus), key=lambda c: load[c])
        out[i], load[c] = c, load[c] + caps[i]
    return out


@dataclass
class Nodes:
    """The running cluster: its servers, how each pair reaches each other, measured speeds."""

    model: str
    names: list[str]
    endpoint: dict[str, str]  # node -> its tier server's host:port
    via: dict[tuple[str, str], str]  # (sender node or SOURCE, receiver) -> the proxy to dial
    servers: dict[str, Any]  # node -> runtime.launch.ServerProcess
    speeds: dict[str, float]
    cluster: Cluster
    order: list[str]  # the graph's compute nodes in topological order

    def name_of(self, address: str) -> str:
        return next((n for n, e in self.endpoint.items() if e == address), address)

    def dial(self, sender: str | None, receiver: str) -> str:
        return self.via[(self.name_of(sender) if sender else SOURCE, self.name_of(receiver))]


@dataclass
class Workload:
    """A model, its profile here and a stream of frames with the whole model's answers."""

    model: str
    module: torch.nn.Module
    inputs: tuple
    profile: Any
    stream: list[tuple]
    want: list[Any]


def workload(model: str, frames: int, profile_repeat: int = 3,
             log: Callable[[str], None] = print) -> Workload:
    torch.set_num_threads(1)
    zoo = entry(model)
    module, inputs = zoo.build(), zoo.example_inputs()
    gen = torch.Generator().manual_seed(0)
    stream = [tuple(torch.randn(x.shape, generator=gen) if x.is_floating_point() else x
                    for x in inputs) for _ in range(frames)]
    with torch.inference_mode():
        want = [module(*f) for f in stream]
    log(f"profiling {model} here (1 thread) ...")
    profile = profile_model(module, inputs, name=model,
                            settings=ProfileSettings(threads=1, repeat=profile_repeat))
    return Workload(model, module, inputs, profile, stream, want)


@contextlib.contextmanager
def cluster_nodes(work: Workload, caps: Sequence[float], link: Link,
                  log: Callable[[str], None] = print, wire: bool = True, medium: bool = True
                  ) -> Iterator[Nodes]:
    """One tier server per cap (pinned, capped), a shaping proxy per ordered pair of hosts,
    each node's speed measured where it runs, and the cluster the planner sees (with
    ``wire``: each node's seconds per byte moved measured too, ``measure_wire``; with
    ``medium``: what all the links carry together, ``measure_medium``, as a shared medium)."""
    from ..runtime.launch import spawn

    if len(caps) < 2:
        raise ValueError(f"a cluster testbed needs at least 2 nodes, got caps {list(caps)}")
    capped = cpucap.available()
    if not capped:
        log("CPU caps need root and cgroups: every node runs at this machine's full speed")
    names = [f"n{i + 1}" for i in range(len(caps))]
    ports = free_ports(len(caps))
    endpoint = {n: f"127.0.0.1:{p}" for n, p in zip(names, ports)}
    pairs = [(u, v) for u in (SOURCE, *names) for v in names if u != v]
    specs = [ProxySpec(endpoint[v], link.bandwidth_bps, link.latency_s) for _, v in pairs]
    with contextlib.ExitStack() as stack:
        addresses, _ = stack.enter_context(proxies_in_child(specs))
        via = dict(zip(pairs, addresses))
        # each node may fan a divided stage out to the others, through its links to them
        servers = {n: stack.enter_context(spawn(
            [work.model], threads=1, cpus=[c], port=ports[i],
            extra_args=["--peers", ",".join(via[(n, v)] for v in names if v != n)]))
            for i, (n, c) in enumerate(zip(names, spread(caps)))}
        if capped:
            for n, cap in zip(names, caps):
                stack.enter_context(cpucap.CpuCap(cap)).add(servers[n].process.pid)
        speeds = measure_speeds(work.model, work.profile, work.module, work.inputs, endpoint)
        log("measured speed factors " + ", ".join(f"{n} x{speeds[n]:.3f}" for n in names))
        bare = Cluster((ClusterNode(SOURCE, work.profile, speeds["device"]),
                        *(ClusterNode(n, work.profile, speeds[n]) for n in names)),
                       default_link=link, source=SOURCE)
        nodes = Nodes(work.model, names, endpoint, via, servers, speeds, bare,
                      [n.name for n in work.profile.nodes])
        if wire:
            per_byte, speeds = measure_wire(nodes, work)
            nodes.speeds = speeds
            log("measured wire ns per byte " + ", ".join(
                f"{n} {per_byte[n] * 1e9:.1f} (x{speeds[n]:.3f})" for n in names))
            nodes.cluster = Cluster((bare.nodes[0], *(
                ClusterNode(n, work.profile, speeds[n], wire_s_per_byte=per_byte[n])
                for n in names)), default_link=link, source=SOURCE)
        if medium:
            rate = measure_medium([nodes.dial(None, n) for n in names], work.profile.input_bytes)
            log(f"measured the links' shared ceiling: {rate / 1e6:.0f} Mbit/s")
            nodes.cluster = dataclasses.replace(nodes.cluster, medium=Medium(rate))
        yield nodes


def measure_wire(nodes: Nodes, work: Workload, frames: int = 20, budget_s: float = 8.0
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Each node's seconds per byte it receives or sends, and its speed again where need be.
    Every node streams the whole model alone (two frames in flight; ``frames`` of them, fewer
    where that would take over ``budget_s``, at least 6): what its period exceeds its compute
    by, over the bytes each frame brings in and takes out, is its figure. Where the period is
    below the compute measured one frame at a time (a CPU quota lets a lone frame run in a
    burst), the node's speed is taken from the period instead, with nothing per byte: either
    way the planner's whole-model stage on the node takes the period streamed here. (One
    node's figure scaled to the others, as before, moved by 2-3x from run to run.)"""
    compute = sum(n.latency_s for n in work.profile.nodes)
    per_byte, speeds = {}, dict(nodes.speeds)
    for name in nodes.names:
        alone = plan_cluster(nodes.cluster, work.profile, "exact", nodes=[name])
        own = compute / nodes.speeds[name]
        count = max(6, min(frames, int(budget_s / max(own, 1e-6))))
        stream = (work.stream * (count // len(work.stream) + 1))[:count]

        async def go(plan: ClusterPlan = alone) -> float:
            async with pipeline_for(nodes, plan) as pipe:
                got = await pipe.run(stream, in_flight=2, warmup=2)
            return 1.0 / got.steady_throughput
        period = asyncio.run(go())
        moved = alone.hop_bytes[0] + alone.hop_bytes[-1]  # the input in, the output out
        if period >= own and moved:
            per_byte[name] = (period - own) / moved
        else:
            per_byte[name], speeds[name] = 0.0, compute / period
    return per_byte, speeds


def pipeline_for(nodes: Nodes, p: ClusterPlan) -> Any:
    """The runtime's ReplicaPipeline for plan ``p`` on ``nodes``: a divided stage runs on its
    coordinator, which fans the run's parts out to the other nodes over its links to them
    (``StagePlan.division``, one per divided stage)."""

    from ..runtime.replicas import ReplicaPipeline
    from ..runtime.stageplan import LOCAL_PEER, StagePlan

    tiers = (SOURCE, *(f"stage{j + 1}" for j in range(len(p.stages))))
    stage_plan = StagePlan.from_assignment(nodes.model, stage_assignment(p, nodes.order), tiers)
    divisions, replicas = [], []
    for j, s in enumerate(p.stages, start=1):
        d = s.division
        if d is None:
            replicas.append([(nodes.endpoint[n], w) for n, w in zip(s.nodes, s.shares)])
            continue
        u = d["coordinator"]
        divisions.append({"stage": j, "first": d["first"], "last": d["last"],
                          "bounds": list(d["row_bounds"]),
                          "peers": [LOCAL_PEER if h == u else nodes.via[(u, h)]
                                    for h in d["hosts"]]})
        replicas.append([(nodes.endpoint[u], 1.0)])
    if divisions:
        stage_plan = dataclasses.replace(stage_plan, division=divisions)
    return ReplicaPipeline(stage_plan, replicas, dial=nodes.dial, deadline_s=300.0)


def divided(p: ClusterPlan) -> bool:
    return any(s.division is not None for s in p.stages)


def check(outputs: Sequence[Any], want: Sequence[Any], first: int = 0, exact: bool = True
          ) -> None:
    """Every answer equals the whole model's: bit for bit, or (``exact=False``: a divided
    stage, whose tiles' convolutions round differently) within 1e-5 relative."""
    for i, (y, w) in enumerate(zip(outputs, want), start=first):
        same = torch.equal(y, w) if exact else torch.allclose(y, w, rtol=1e-5, atol=1e-5 * float(
            w.abs().max()))
        if not same:
            raise AssertionError(f"frame {i}: the pipeline's answer differs from the whole "
                                 "model's" + ("" if exact else " by more than 1e-5 relative"))


async def stream_plan(nodes: Nodes, work: Workload, label: str, p: ClusterPlan,
                      log: Callable[[str], None] = print, latency: bool = False) -> Streamed:
    """``work``'s frames through plan ``p``, answers checked. In flight: two per node, and
    at least two over the smallest replica share, so that the slowest replica gets its share
    of the frames (``Dispatch`` gives it one only when the others have that many waiting).
    With ``latency``, a frame's latency is measured first: the frames one at a time."""
    in_plan = sum(len(s.nodes) for s in p.stages)
    smallest = min(w for s in p.stages for w in s.shares if w > 0)
    in_flight = max(2 * in_plan + 1, math.ceil(2 / smallest))
    measured_latency = None
    async with pipeline_for(nodes, p) as pipe:
        got = await pipe.run(work.stream, in_flight=in_flight, warmup=2 * in_plan)
        if latency:
            one = await pipe.run(work.stream[:max(5, len(work.stream) // 4)], in_flight=1)
            check(one.outputs, work.want, exact=not divided(p))
            gaps = [b - a for a, b in zip([0.0, *one.done_s], one.done_s)]
            measured_latency = sorted(gaps)[len(gaps) // 2]
    check(got.outputs, work.want, exact=not divided(p))
    if got.fell_back:
        log(f"{got.fell_back} frames finished here (a node failed)")
    busy = {nodes.name_of(s): u for s, u in got.utilisation.items()}
    return Streamed(label, p, got.steady_throughput, busy, len(work.stream), measured_latency)


def run_cluster_testbed(model: str = "resnet50", caps: Sequence[float] = CAPS,
                        link: Link = Link(100e6, 0.002), frames: int = 40,
                        method: str = "exact", profile_repeat: int = 3, marginal: bool = False,
                        log: Callable[[str], None] = print, wire: bool = True,
                        latency_cap_s: float | None = None, cap_of_single: float | None = None
                        ) -> tuple[Cluster, list[Streamed]]:
    """Stream ``frames`` frames of ``model`` under each of the three plans (see the module);
    with ``marginal``, also the best plan on the k fastest nodes for every k in between, so
    that "does the k-th node help?" is measured as well as predicted. With ``latency_cap_s``
    every plan keeps a frame within it, the planner's may divide a stage's frames across its
    nodes (``plan_cluster(divide=)``), the best plan without dividing is streamed too when one
    meets the cap, and each plan's frame latency is measured as well. ``cap_of_single``: the
    cap as that fraction of the fastest node's predicted frame (below 1: only a divided stage
    meets it); the fastest node is then streamed without the cap, as "single (over the cap)"."""
    if len(caps) < 2:
        raise ValueError(f"a cluster testbed needs at least 2 nodes, got caps {list(caps)}")
    work = workload(model, frames, profile_repeat, log)
    results = []
    with cluster_nodes(work, caps, link, log, wire) as nodes:
        cluster, names, profile = nodes.cluster, nodes.names, work.profile
        singles = [plan_cluster(cluster, profile, "exact", nodes=[n]) for n in names]
        fastest = max(singles, key=lambda p: p.throughput_fps)
        if cap_of_single is not None:
            latency_cap_s = cap_of_single * fastest.latency_s
            log(f"latency cap {latency_cap_s * 1e3:.1f} ms: {cap_of_single:g} of the fastest "
                f"node's frame")
        graph = trace(work.module, work.inputs, name=model) if latency_cap_s else None
        plans = {"planned": plan_cluster(cluster, profile, method, latency_cap_s, nodes=names,
                                         divide=graph)}
        if latency_cap_s:
            with contextlib.suppress(ClusterError):  # no plan meets the cap without dividing
                plans["undivided"] = plan_cluster(cluster, profile, method, latency_cap_s,
                                                  nodes=names)
        with contextlib.suppress(ClusterError):
            plans["chain"] = plan_cluster(cluster, profile, "chain", latency_cap_s, nodes=names)
        # one node has one plan (the whole model on it): under a cap, it meets it or not
        singles = [p for p in singles if not latency_cap_s or p.latency_s <= latency_cap_s]
        if singles:
            plans["single"] = max(singles, key=lambda p: p.throughput_fps)
        else:
            plans["single (over the cap)"] = fastest
        if marginal:  # the best plan on the k fastest nodes, k = 2 .. N - 1 (1 and N above)
            for m in marginal_nodes(cluster, profile, method, latency_cap_s, nodes=names,
                                    divide=graph)[1:-1]:
                plans[f"fastest {m.k}"] = m.plan
        for label, p in plans.items():
            log(f"{label}: {p.summary()}; streaming {frames} frames ...")
            results.append(asyncio.run(stream_plan(nodes, work, label, p, log,
                                                   latency=latency_cap_s is not None)))
    return cluster, results
