"""Many unequal nodes, one stream of frames, run for real on this machine.

Each node is a tier server in its own process, pinned to a CPU and held to its own fraction
of one (``caps``: unequal nodes) where the machine allows it (root and cgroups). Frames arrive
at this process (the source and sink: it computes nothing) and every pair of hosts talks over
its own emulated link (a shaping proxy per ordered pair). Each node's speed is measured where
it runs; the cluster planner (``tiercut.cluster.plan_cluster``) sees the profile measured here
scaled by them. Three plans are then streamed, ``frames`` frames each with several in flight
(``runtime.replicas.ReplicaPipeline``): the planner's, the placement-blind chain over the
nodes in the order given, and the best single node. For each: predicted and measured frames
per second, and each server's utilisation. Every answer is checked against the whole model's,
bit for bit.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..cluster import Cluster, ClusterNode, ClusterPlan, plan_cluster
from ..link.child import ProxySpec, proxies_in_child
from ..measure import cpucap
from ..measure.profiler import ProfileSettings, profile_model
from ..planner import Link
from ..zoo import entry
from .divided import free_ports
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
    wire_s: dict[str, float]  # node -> mean seconds decoding and encoding a frame's tensors

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


def run_cluster_testbed(model: str = "resnet50", caps: Sequence[float] = CAPS,
                        link: Link = Link(100e6, 0.002), frames: int = 40,
                        method: str = "exact", profile_repeat: int = 3, marginal: bool = False,
                        log: Callable[[str], None] = print) -> tuple[Cluster, list[Streamed]]:
    """Stream ``frames`` frames of ``model`` under each of the three plans (see the module);
    with ``marginal``, also the best plan on the k fastest nodes for every k in between, so
    that "does the k-th node help?" is measured as well as predicted."""
    from ..runtime.launch import spawn
    from ..runtime.replicas import ReplicaPipeline
    from ..runtime.stageplan import StagePlan

    if len(caps) < 2:
        raise ValueError(f"a cluster testbed needs at least 2 nodes, got caps {list(caps)}")
    capped = cpucap.available()
    if not capped:
        log("CPU caps need root and cgroups: every node runs at this machine's full speed")
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
    order = [n.name for n in profile.nodes]
    names = [f"n{i + 1}" for i in range(len(caps))]
    ports = free_ports(len(caps))
    endpoint = {n: f"127.0.0.1:{p}" for n, p in zip(names, ports)}
    pairs = [(u, v) for u in (SOURCE, *names) for v in names if u != v]
    specs = [ProxySpec(endpoint[v], link.bandwidth_bps, link.latency_s) for _, v in pairs]
    cpus = spread(caps)
    results = []
    with contextlib.ExitStack() as stack:
        addresses, _ = stack.enter_context(proxies_in_child(specs))
        via = dict(zip(pairs, addresses))
        servers = {n: stack.enter_context(spawn([model], threads=1, cpus=[c], port=ports[i]))
                   for i, (n, c) in enumerate(zip(names, cpus))}
        if capped:
            for n, cap in zip(names, caps):
                stack.enter_context(cpucap.CpuCap(cap)).add(servers[n].process.pid)
        speeds = measure_speeds(model, profile, module, inputs, endpoint)
        log("measured speed factors " + ", ".join(f"{n} x{speeds[n]:.3f}" for n in names))
        cluster = Cluster((ClusterNode(SOURCE, profile, speeds["device"]),
                           *(ClusterNode(n, profile, speeds[n]) for n in names)),
                          default_link=link, source=SOURCE)
        plans = {"planned": plan_cluster(cluster, profile, method, nodes=names),
                 "chain": plan_cluster(cluster, profile, "chain", nodes=names)}
        singles = [plan_cluster(cluster, profile, "exact", nodes=[n]) for n in names]
        plans["single"] = max(singles, key=lambda p: p.throughput_fps)
        if marginal:  # the best plan on the k fastest nodes, k = 2 .. N - 1 (1 and N above)
            fastest = sorted(names, key=lambda n: -speeds[n])
            for k in range(2, len(names)):
                plans[f"fastest {k}"] = plan_cluster(cluster, profile, method,
                                                     nodes=fastest[:k])
        by_address = {endpoint[n]: n for n in names}

        def dial(sender: str | None, receiver: str) -> str:
            return via[(by_address[sender] if sender else SOURCE, by_address[receiver])]

        async def go(label: str, p: ClusterPlan) -> Streamed:
            tiers = (SOURCE, *(f"stage{j + 1}" for j in range(len(p.stages))))
            stage_plan = StagePlan.from_assignment(model, stage_assignment(p, order), tiers)
            replicas = [[(endpoint[n], w) for n, w in zip(s.nodes, s.shares)]
                        for s in p.stages]
            async with ReplicaPipeline(stage_plan, replicas, dial=dial,
                                       deadline_s=300.0) as pipe:
                nodes = sum(len(s.nodes) for s in p.stages)
                got = await pipe.run(stream, in_flight=2 * nodes + 1,
                                     warmup=2 * sum(len(s.nodes) for s in p.stages))
            for i, (y, w) in enumerate(zip(got.outputs, want)):
                if not torch.equal(y, w):
                    raise AssertionError(f"frame {i}: the pipeline's answer differs from the "
                                         "whole model's")
            if got.fell_back:
                log(f"{got.fell_back} frames finished here (a node failed)")
            busy = {by_address.get(s, s): u for s, u in got.utilisation.items()}
            wire_s: dict[str, list[float]] = {}
            for m in got.measurements:
                for t in m.servers:
                    wire_s.setdefault(by_address.get(t.server, t.server), []).append(
                        t.decode_s + t.encode_s)
            return Streamed(label, p, got.steady_throughput, busy, len(stream),
                            {n: sum(v) / len(v) for n, v in wire_s.items()})

        for label, p in plans.items():
            log(f"{label}: {p.summary()}; streaming {frames} frames ...")
            results.append(asyncio.run(go(label, p)))
    return cluster, results
