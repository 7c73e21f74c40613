"""A node leaves a running cluster: no frame in flight is lost, and the stream goes on under a
plan made without it.

The cluster of ``cluster.py`` streams its frames in chunks, several in flight. While the
second chunk is under way, one node of the plan is killed (SIGKILL: no goodbye). Frames on it
fail over to another replica of its stage, or are finished here (the runtime's fallback);
every answer is still checked against the whole model's. After each chunk, the replicas that
were chosen for a frame and did not compute it (``StreamResult.absent``) and no longer answer
Health are taken out, and the cluster planner plans the rest of the stream on the nodes left.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..cluster import ClusterPlan, plan_cluster
from ..planner import Link
from ..runtime.replicas import health
from .cluster import check, cluster_nodes, pipeline_for, workload


@dataclass
class LeaveResult:
    left: str  # the node killed
    plans: list[ClusterPlan]  # the plan each chunk ran under, in order
    frames: int  # answered, every one checked
    fell_back: int  # frames finished here
    failed_over: int  # frames that went to another replica
    absent: list[set[str]] = field(default_factory=list)  # per chunk: nodes found gone


def run_with_a_node_leaving(model: str = "squeezenet1_1", caps: Sequence[float] = (0.5, 0.3, 0.3),
                            link: Link = Link(200e6, 0.001), frames: int = 30, chunk: int = 10,
                            leave: str | None = None, method: str = "exact",
                            log: Callable[[str], None] = print) -> LeaveResult:
    """Stream ``frames`` frames; ``leave`` (default: the first node of the plan's first stage)
    is killed during the second chunk of ``chunk`` frames."""
    if chunk < 1 or frames <= chunk:
        raise ValueError(f"give more frames ({frames}) than a chunk ({chunk}), and a chunk >= 1: "
                         "the node leaves during the second chunk")
    work = workload(model, frames, log=log)
    with cluster_nodes(work, caps, link, log) as nodes:
        alive = list(nodes.names)
        plan = plan_cluster(nodes.cluster, work.profile, method, nodes=alive)
        leave = leave or plan.stages[0].nodes[0]
        if leave not in alive:
            raise ValueError(f"node {leave!r} is not in the cluster {alive}")
        result = LeaveResult(leave, [], 0, 0, 0)
        for start in range(0, frames, chunk):
            part = work.stream[start:start + chunk]
            kill = start == chunk  # the second chunk

            async def go(p: ClusterPlan = plan, part: list = part, kill: bool = kill):  # noqa: ANN202
                in_plan = sum(len(s.nodes) for s in p.stages)
                async with pipeline_for(nodes, p) as pipe:
                    task = asyncio.create_task(pipe.run(part, in_flight=2 * in_plan + 1))
                    if kill:  # frames in flight when it goes: about half the chunk answered
                        await asyncio.sleep(0.5 * len(part) / p.throughput_fps)
                        log(f"killing {leave} with frames in flight")
                        nodes.servers[leave].process.kill()
                    return await task

            result.plans.append(plan)
            got = asyncio.run(go())
            check(got.outputs, work.want[start:start + chunk], start)
            result.frames += len(got.outputs)
            result.fell_back += got.fell_back
            result.failed_over += got.failed_over
            # a frame finished here counts every replica chosen for it absent, the healthy
            # ones after the node that failed too (and, on a loaded machine, a slow one):
            # only a node that no longer answers Health has left
            absent = {nodes.name_of(a) for a in got.absent}
            gone = {n for n in absent if asyncio.run(health(nodes.endpoint.get(n, n), 2.0))}
            result.absent.append(gone)
            if gone & set(alive):
                alive = [n for n in alive if n not in gone]
                plan = plan_cluster(nodes.cluster, work.profile, method, nodes=alive)
                log(f"{', '.join(sorted(gone))} gone: planned again on {', '.join(alive)}: "
                    f"{plan.summary()}")
    return result
