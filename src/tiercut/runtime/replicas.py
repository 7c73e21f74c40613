"""A stream of frames through a pipeline whose stages may be held by several replicas.

``ReplicaPipeline(plan, stages)`` runs ``plan`` (a StagePlan: stage 0 here, stage k on the
servers of ``stages[k-1]``) for many frames at once. ``stages[k-1]`` lists the replicas of
stage k as (host:port, share): each frame takes one replica per stage (``Dispatch``: the one
with the fewest frames under way for its share, so that the shares hold while every replica
keeps up and a slower one gathers no backlog), and the others of that stage as its failover
hosts: a replica that
leaves is skipped (SplitClient's failover, on every server's forward too), and a frame in
flight on it is sent to another replica, or finished here when none is left. No frame is lost.

``run(frames, in_flight)`` keeps ``in_flight`` frames under way, the answers in frame order,
and reports the throughput (over the whole stream, and steady: the pipeline full), each
server's utilisation (compute seconds it reported over the
wall time) and the frames that failed over or fell back here.

The replica choice is plain data in, one SplitClient per distinct choice of replicas (all on
the caller's event loop, sharing nothing but the servers). ``dial(sender, receiver)`` gives
the address by which the server ``sender`` (None: this process) reaches ``receiver`` (a
replica's endpoint): a shaping proxy per pair of nodes, say; the endpoint itself by default.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import grpc
import torch

from ..errors import TiercutError
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from .client import SplitClient
from .measurement import Measurement
from .stageplan import StagePlan
from .transport import channel_options


class PipelineError(TiercutError, ValueError):
    """Replicas or frames a pipeline cannot run."""


@dataclass
class StreamResult:
    """What ``ReplicaPipeline.run`` measured."""

    outputs: list[Any]  # in frame order
    measurements: list[Measurement]
    seconds: float  # wall time from the first frame sent to the last answer
    utilisation: dict[str, float] = field(default_factory=dict)  # server -> busy share
    frames_per_replica: dict[str, int] = field(default_factory=dict)  # chosen replica -> n
    done_s: list[float] = field(default_factory=list)  # each answer's time from the start, sorted
    # replicas chosen for a frame that did not compute it (it failed over or fell back): the
    # one that failed, and for a frame finished here the healthy ones after it too
    absent: set[str] = field(default_factory=set)

    @property
    def throughput(self) -> float:
        """Frames per second over the whole stream, its filling and draining included."""
        return len(self.outputs) / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_throughput(self) -> float:
        """Frames per second between the 20th and the 80th percentile of the answers: the
        pipeline full, neither filling nor draining (a slow replica's last frame, say, can
        hold the end of a short stream far past the others). The whole stream's figure when
        fewer than 10 frames came back."""
        n = len(self.done_s)
        if n < 10:
            return self.throughput
        a, b = n // 5, (4 * n) // 5
        span = self.done_s[b] - self.done_s[a]
        return (b - a) / span if span > 0 else self.throughput

    @property
    def fell_back(self) -> int:
        return sum(m.fallback for m in self.measurements)

    @property
    def failed_over(self) -> int:
        return sum(m.failovers > 0 for m in self.measurements)


class Dispatch:
    """Which replica of one stage takes the next frame: the one whose frames under way, the new
    one counted, are the fewest for its share ((outstanding + 1) / share), ties broken by
    smooth weighted round robin. With frames always under way on every replica the shares
    hold, as the planner assumed; a replica slower than its share gathers no backlog (the
    others take its frames); one frame at a time goes to the largest share, the fastest."""

    def __init__(self, shares: Sequence[float]) -> None:
        self.shares = list(shares)
        self.total = sum(self.shares)
        self.current = [0.0] * len(self.shares)
        self.outstanding = [0] * len(self.shares)

    def pick(self) -> int:
        for i, s in enumerate(self.shares):
            self.current[i] += s
        best = min(range(len(self.shares)), key=lambda i: (
            (self.outstanding[i] + 1) / self.shares[i], -self.current[i]))
        self.current[best] -= self.total
        self.outstanding[best] += 1
        return best

    def done(self, i: int) -> None:
        self.outstanding[i] -= 1


class ReplicaPipeline:
    """``plan`` over the replicas of ``stages`` (see the module's docstring). Other keyword
    arguments go to each SplitClient (deadline_s, codec, ...). Use as an async context manager,
    or ``await aclose()``."""

    def __init__(self, plan: StagePlan, stages: Sequence[Sequence[tuple[str, float]]],
                 dial: Callable[[str | None, str], str] | None = None,
                 **client_kw: Any) -> None:
        if len(stages) != plan.stages - 1:
            raise PipelineError(f"the plan runs on tiers {list(plan.tiers)}: give the replicas "
                                f"of its {plan.stages - 1} stages after the first, got "
                                f"{len(stages)}")
        seen: set[str] = set()
        for k, replicas in enumerate(stages, start=1):
            if not replicas:
                raise PipelineError(f"stage {k} ({plan.tiers[k]}) has no replica; give at least "
                                    "one (host:port, share)")
            for replica in replicas:
                if isinstance(replica, str) or len(replica) != 2:
                    raise PipelineError(f"stage {k}: replica {replica!r} is not a (host:port, "
                                        "share) pair")
                endpoint, share = replica
                if not isinstance(endpoint, str) or ":" not in endpoint:
                    raise PipelineError(f"stage {k}: replica {endpoint!r} is not host:port")
                if not (isinstance(share, (int, float)) and share > 0):
                    raise PipelineError(f"stage {k}: replica {endpoint} has share {share!r}; "
                                        "give a number > 0 (its part of the frames)")
                if endpoint in seen:
                    raise PipelineError(f"replica {endpoint} holds two stages; a server "
                                        "holds one stage of a pipeline")
                seen.add(endpoint)
        self.plan, self.client_kw = plan, client_kw
        self.dial = dial or (lambda sender, receiver: receiver)
        self.stages = [[e for e, _ in replicas] for replicas in stages]
        self._dispatch = [Dispatch([s for _, s in replicas]) for replicas in stages]
        self._clients: dict[tuple[int, ...], SplitClient] = {}

    def _client(self, choice: tuple[int, ...]) -> SplitClient:
        client = self._clients.get(choice)
        if client is None:  # the chosen replica first, the stage's others as its failover,
            hosts, sender = [], None  # each as the previous stage's chosen replica dials it
            for r, i in zip(self.stages, choice):
                hosts.append([self.dial(sender, e) for e in
                              (r[i], *(e for j, e in enumerate(r) if j != i))])
                sender = r[i]
            client = self._clients[choice] = SplitClient(self.plan, hosts, **self.client_kw)
        return client

    def choose(self) -> tuple[int, ...]:
        """The replica of each stage for the next frame (``Dispatch``); give it back to
        ``release`` when the frame is answered."""
        return tuple(d.pick() for d in self._dispatch)

    def release(self, choice: tuple[int, ...]) -> None:
        for d, i in zip(self._dispatch, choice):
            d.done(i)

    async def run(self, frames: Sequence[Sequence[torch.Tensor]], in_flight: int = 4,
                  warmup: int = 0) -> StreamResult:
        """Every frame through the pipeline, ``in_flight`` at once, after ``warmup`` frames
        (the first ones again, not counted) one at a time, to prepare every replica."""
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise PipelineError(f"in_flight must be a whole number >= 1, got {in_flight!r}")
        if not frames:
            raise PipelineError("give at least one frame")
        for i in range(warmup):
            await self._infer(frames[i % len(frames)])
        outputs: list[Any] = [None] * len(frames)
        measured: list[Any] = [None] * len(frames)
        picked: list[list[str]] = [[] for _ in frames]
        done: list[float] = []
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with gate:
                picked[i], outputs[i], measured[i] = await self._infer(frames[i])
                done.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(frames))))
        seconds = time.perf_counter() - t0
        busy: Counter = Counter()
        absent: set[str] = set()
        for m, wanted in zip(measured, picked):
            for t in m.servers:
                busy[t.server] += t.compute_s
            absent.update(set(wanted) - {t.server for t in m.servers})
        chosen = Counter(e for wanted in picked for e in wanted)
        return StreamResult(outputs, measured, seconds,
                            {s: b / seconds for s, b in busy.items()}, dict(chosen),
                            sorted(done), absent)

    async def _infer(self, frame: Sequence[torch.Tensor]) -> tuple[list[str], Any, Measurement]:
        """One frame on the replicas ``choose`` gives: those replicas, the answer, how it went."""
        choice = self.choose()
        try:
            output, m = await self._client(choice).ainfer(*frame)
        finally:
            self.release(choice)
        return [r[c] for r, c in zip(self.stages, choice)], output, m

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Every replica answers Health (dialled as this process dials a stage's first hop),
        or a PipelineError names the ones that do not: a node unreachable at the start is a
        mistake in the plan or the cluster, not a node that left (those are failed over).
        With TLS (``security=``) the check is left to the first frame."""
        if self.client_kw.get("security") is not None:
            return

        checks = [(k, e) for k, r in enumerate(self.stages, start=1) for e in r]
        found = await asyncio.gather(*(health(self.dial(None, e), timeout_s)
                                       for _, e in checks))
        bad = [f"stage {k} ({self.plan.tiers[k]}) replica {e} {why}"
               for (k, e), why in zip(checks, found) if why]
        if bad:
            raise PipelineError("; ".join(bad) + ": start it, or plan without it")

    async def __aenter__(self) -> "ReplicaPipeline":
        await self.check_reachable()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def health(address: str, timeout_s: float = 10.0) -> str | None:
    """None when the tier server at ``address`` answers Health as serving; else why not."""
    channel = grpc.aio.insecure_channel(address, options=channel_options())
    try:
        reply = await pb_grpc.TierServerStub(channel).Health(pb.HealthRequest(),
                                                             timeout=timeout_s)
        return None if reply.status == pb.HealthReply.SERVING else "is not serving"
    except grpc.aio.AioRpcError as exc:
        return f"does not answer ({exc.code().name}: {(exc.details() or '')[:80]})"
    finally:
        await channel.close()
