"""The stages a tier server has prepared: ``Prepare`` is checked (plan, stage, codec, next
hosts, input size), the stage built once by its backend and kept, the least recently prepared
dropped beyond ``max_plans``; ``Infer`` looks its stage up by plan id."""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import grpc

from .. import codecs
from ..errors import TiercutError, UnknownModelError
from . import tiercut_pb2 as pb
from .backends import StageRunner, build_runner
from .stageplan import LOCAL_PEER, Layout, PlanError, StagePlan, input_elements, layout
from .status import Abort, check_codec

INLINE_FLOPS, INLINE_BYTES = 100_000, 64 << 10
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass
class Prepared:
    plan: StagePlan
    layout: Layout
    stage: int
    runner: StageRunner
    next_endpoint: str
    forward_codec: str
    next_alternates: tuple[str, ...] = ()
    inline: bool = False  # tiny enough to run on the event loop rather than hop to a worker
    where: str = ""  # "stage k on tier 'edge' (host:port)", for messages


class StageCache:
    """Prepared stages by (plan id, stage), in the order they were prepared."""

    def __init__(self, models: Sequence[str], limits: codecs.Limits, backend: str,
                 max_plans: int, cache_dir: str | os.PathLike | None, threads: int | None,
                 peers: Sequence[str] = (), divide: Callable | None = None):
        self.peers = tuple(peers)  # the only endpoints a divided stage may fan out to
        # (plan, layout, k) -> the divided stage: divided.divided_stage, passed in because
        # divided imports fanout, which imports what imports this module
        self.divide = divide
        self.models, self.limits, self.backend = tuple(models), limits, backend
        self.max_plans, self.cache_dir, self.threads = max_plans, cache_dir, threads
        self.prepared: dict[tuple[str, int], Prepared] = {}
        self._lock: asyncio.Lock | None = None  # made on the server's event loop

    async def prepare(self, request: pb.PrepareRequest, endpoint: str) -> Prepared:
        bad = grpc.StatusCode.INVALID_ARGUMENT
        try:
            plan = StagePlan.from_json(request.plan_json)
        except PlanError as exc:
            raise Abort(bad, f"Prepare: {exc}") from None
        if plan.model not in self.models:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"Prepare: model {plan.model!r} is not hosted here; this server hosts "
                        f"{list(self.models)}")
        if not 0 <= request.stage < plan.stages:
            raise Abort(bad, f"Prepare: stage {request.stage} is out of range; the plan has "
                             f"stages 0..{plan.stages - 1} for tiers {list(plan.tiers)}")
        division = plan.division_of(request.stage)
        if division is not None:
            if self.backend != "torch":
                raise Abort(bad, f"Prepare: stage {request.stage} is divided across peers; "
                                 f"only the torch backend runs a divided stage, this server "
                                 f"runs {self.backend!r}")
            foreign = [p for p in division["peers"] if p not in (*self.peers, LOCAL_PEER)]
            if foreign:
                raise Abort(bad, f"Prepare: the plan's division names peers {foreign} that "
                                 f"this server may not connect to; allowed (--peers): "
                                 f"{list(self.peers)}")
        codec = request.forward_codec or "raw"
        check_codec(codec, "Prepare: forward_codec")
        nxt = request.next_endpoint
        if nxt and not _ENDPOINT.match(nxt):
            raise Abort(bad, f"Prepare: next_endpoint {nxt!r} is not host:port")
        alternates = tuple(request.next_alternates)
        if len(alternates) > 16:
            raise Abort(bad, f"Prepare: {len(alternates)} next_alternates; at most 16")
        for alt in alternates:
            if not _ENDPOINT.match(alt):
                raise Abort(bad, f"Prepare: next_alternates entry {alt[:80]!r} is not "
                                 "host:port")
        if alternates and not nxt:
            raise Abort(bad, "Prepare: next_alternates without a next_endpoint")
        if not nxt and request.stage < plan.stages - 1:
            raise Abort(bad, f"Prepare: stage {request.stage} is not the last of "
                             f"{plan.stages} stages, so next_endpoint must name the next tier")
        try:
            elements = await asyncio.to_thread(input_elements, plan)
        except UnknownModelError as exc:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Prepare: {exc}") from None
        if elements > self.limits.max_elements:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"Prepare: the plan's inputs hold {elements} elements, over this "
                        f"server's limit of {self.limits.max_elements}")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                lay = await asyncio.to_thread(layout, plan)
                if division is not None:
                    runner = self.divide(plan, lay, request.stage)  # checked above: torch
                else:
                    runner = await asyncio.to_thread(build_runner, self.backend, plan, lay,
                                                     request.stage, self.cache_dir,
                                                     self.threads)
            except UnknownModelError as exc:
                raise Abort(grpc.StatusCode.NOT_FOUND, f"Prepare: {exc}") from None
            except TiercutError as exc:
                raise Abort(bad, f"Prepare: cannot build stage {request.stage} of "
                                 f"{plan.model}: {exc}") from None
            except Exception as exc:
                raise Abort(grpc.StatusCode.INTERNAL,
                            f"Prepare: building {plan.model} failed: "
                            f"{type(exc).__name__}: {exc}") from None
            prepared = Prepared(plan, lay, request.stage, runner, nxt, codec, alternates,
                                self.backend == "torch" and _tiny(lay, request.stage),
                                f"stage {request.stage} on tier "
                                f"{plan.tiers[request.stage]!r} ({endpoint})")
            self.prepared.pop((plan.plan_id, request.stage), None)
            self.prepared[(plan.plan_id, request.stage)] = prepared
            while len(self.prepared) > self.max_plans:  # the least recently prepared goes
                del self.prepared[next(iter(self.prepared))]
        return prepared

    def lookup(self, plan_id: str, stage: int) -> Prepared:
        if stage:
            found = self.prepared.get((plan_id, stage))
        else:
            found = [p for (pid, _), p in self.prepared.items() if pid == plan_id]
            found = found[0] if len(found) == 1 else None
        if found is None:
            known = sorted({pid[:12] for pid, _ in self.prepared})
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"unknown plan id {plan_id[:64]!r} (stage {stage}); send Prepare "
                        f"first (plans prepared here: {known})")
        return found


def _tiny(lay: Layout, k: int) -> bool:
    """A stage of a few microseconds (slices, views, a small head): a worker thread's hop
    (~0.1 ms) would cost more than running it on the event loop."""
    nodes = [lay.graph.nodes[n] for n in lay.stages[k].nodes]
    return (sum(n.flops for n in nodes) <= INLINE_FLOPS
            and sum(n.output_bytes for n in nodes) <= INLINE_BYTES)
