"""The device side: run stage 0 here, send the rest up the chain of tier servers.

``SplitClient(plan, endpoints)`` prepares the servers once (last tier first, so that every
forwarding target exists), then for each request runs the device stage locally, encodes what
the first server needs, and decodes the model outputs that come back. If the next tier cannot
be reached (UNAVAILABLE), does not answer in time (DEADLINE_EXCEEDED or ``deadline_s``), and
``fallback`` is on, the client finishes the request itself by running the remaining stages (it
has the whole model): no request is lost, and the Measurement says so.

A tier may have several hosts: ``endpoints=[["edge1:1", "edge2:1"], ["cloud:1"]]`` (or a
mapping ``{"edge": [...], "cloud": "cloud:1"}`` in route order; the flat form ``["edge:1",
"cloud:1"]`` is one host per tier). The client tries the first tier's hosts in order, skipping
one that failed within ``retry_after_s``, and moves to the next host when one is unreachable,
overloaded (RESOURCE_EXHAUSTED) or late; each server is told the next tier's hosts and fails
over the same way. Only when every host fails does the request finish locally.

``security`` (security.ClientSecurity: CA, client certificate, token) makes every channel TLS
and sends the token on every call; each client sends its own ``tiercut-client-id``.

Requests go over one InferStream call per host (stream.py), Prepare as a unary call.
``hand_over(hosts)`` moves a tier's stage to other servers mid-stream, make before break.

Beside it: hosts.py (the endpoint forms, channels per event loop), preparing.py (a stage's
Prepare on one host), route.py (a request's way to a first-tier host), handover.py (moving a
stage), fallback.py (when a request finishes here), hedge.py (racing the device),
measurement.py (what a request measured, and how a hop's transfer time is found), bench.py
(many requests, summed up).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import random
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

import grpc
import torch

from .. import codecs
from ..errors import TiercutError
from ..graph.split import assemble_output
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .bench import BenchResult, run_bench
from .fallback import RemoteError, Unreachable, run_local
from .handover import HandOver, hand_over
from .hedge import race
from .hosts import Channels, Endpoints, tier_hosts
from .measurement import Hop, Measurement
from .preparing import prepare_on, prepare_request
from .redundant import check_redundancy
from .route import remote_part
from .security import ClientSecurity, metadata
from .stageplan import StagePlan, layout
from .stream import InferStream
from .transport import MAX_MESSAGE_BYTES, keep_freed_memory


class InputError(TiercutError, ValueError):
    """Inputs that do not fit the plan's model (the servers would refuse them)."""


class SplitClient:
    """Run ``plan`` with stage 0 here and stage k on ``endpoints[k-1]``.

    ``codec``: one codec name for every hop, or one per hop; ``reply_codec`` for the outputs
    coming back. ``deadline_s`` bounds the remote part of each request; ``host_timeout_s``
    bounds the try on one host of the first tier before the next one is tried.
    ``device_executor``: where the device's stages run (the client's own pool of
    ``device_workers`` threads when None); the client does not shut down one it was given.
    ``redundant``: copies of each request to that many of the first tier's hosts, the first
    answer taken; the copies after the first sent ``redundant_after_s`` later (redundant.py).
    """

    def __init__(self, plan: StagePlan | Mapping[str, Any] | str, endpoints: Endpoints,
                 codec: str | Sequence[str] = "raw", deadline_s: float | None = None,
                 fallback: bool = True, reply_codec: str = "raw",
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, retry_after_s: float = 1.0,
                 device_workers: int = 1, input_shape: Sequence[int] | None = None,
                 tune_malloc: bool = True, security: ClientSecurity | None = None,
                 client_id: str | None = None, host_timeout_s: float | None = None,
                 device_executor: concurrent.futures.Executor | None = None,
                 redundant: int = 1, redundant_after_s: float = 0.0):
        if isinstance(plan, str):
            plan = StagePlan.from_json(plan, input_shape)
        elif not isinstance(plan, StagePlan):
            plan = StagePlan.from_dict(dict(plan), input_shape)
        self.plan = plan
        if not isinstance(endpoints, Mapping) and len(endpoints) != plan.stages - 1:
            raise ValueError(f"the plan runs on tiers {list(plan.tiers)}: give "
                             f"{plan.stages - 1} endpoints (one per tier after "
                             f"{plan.tiers[0]!r}), got {len(endpoints)}")
        self.hosts = tier_hosts(endpoints, plan.tiers)
        self.endpoints = tuple(h[0] for h in self.hosts)  # the first host of each tier
        self.security = security
        self.host_timeout_s = host_timeout_s  # bounds one host's try, so a slow one fails over
        self.redundant, self.redundant_after_s = check_redundancy(redundant, redundant_after_s)
        self._rng = random.Random()  # which k of the hosts a redundant request goes to
        self.client_id = client_id or uuid.uuid4().hex[:16]
        # request ids: a random prefix per client and a count (unique on every stream they
        # share, without a call to the system's random source per request)
        self._id_prefix, self._ids = uuid.uuid4().hex[:16] + "-", itertools.count()
        self._metadata = metadata(security, self.client_id)  # sent with every call
        self.last_load: dict[str, wire.Load] = {}  # per host: from replies and shed answers
        hops = max(plan.stages - 1, 0)
        self.codecs = (codec,) * hops if isinstance(codec, str) else tuple(codec)
        if len(self.codecs) != hops:
            raise ValueError(f"give one codec or {hops} (one per hop), got {len(self.codecs)}")
        for name in (*self.codecs, reply_codec):
            codecs.parse_codec(name)  # CodecError names a bad one now, not per request
        self.reply_codec, self.deadline_s, self.fallback = reply_codec, deadline_s, fallback
        self.limits, self.max_message_bytes = limits, max_message_bytes
        self.retry_after_s = retry_after_s
        if tune_malloc:
            keep_freed_memory()  # see there: saves a page fault per 4 KiB sent or received
        self.layout = layout(plan)
        self.graph = self.layout.graph
        self._remote = any(s.nodes for s in self.layout.stages[1:])
        self._expected_back = tuple(v for k in range(1, plan.stages)
                                    for v in self.layout.returns[k])
        self._own_pool = device_executor is None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            device_workers, thread_name_prefix="tiercut-device") if device_executor is None \
            else device_executor
        self._channels = Channels(security, self._metadata, max_message_bytes)
        self._ready: set[tuple[int, str]] = set()  # (stage, host) prepared
        self._prepare_locks: dict[int, asyncio.Lock] = {}
        self._down: dict[str, float] = {}  # host -> monotonic time until which it is skipped
        self._in_flight: dict[str, str] = {}  # "request id@host" -> the first-tier host waited on
        self.last_request: pb.InferRequest | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    # --- sync API, on a private event loop ---------------------------------------------------

    def _run(self, coro: Any) -> Any:
        with self._loop_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                name="tiercut-client")
                self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def infer(self, *inputs: torch.Tensor, hedge: bool = False,
              hedge_after_s: float = 0.0) -> tuple[Any, Measurement]:
        return self._run(self.ainfer(*inputs, hedge=hedge, hedge_after_s=hedge_after_s))

    def prepare(self) -> None:
        self._run(self.aprepare())

    def bench(self, inputs: torch.Tensor | Sequence[torch.Tensor], requests: int = 20,
              concurrency: int = 1, warmup: int = 1,
              progress: Callable[[int, int], None] | None = None) -> BenchResult:
        return self._run(self.abench(inputs, requests, concurrency, warmup, progress))

    def close(self) -> None:
        if self._loop is not None:
            self._run(self.aclose())
            self._run(_settle())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)  # type: ignore[union-attr]
            self._loop.close()
            self._loop = None
        if self._own_pool:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> "SplitClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- async API ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._channels.close()

    def _host(self, host: str) -> tuple[grpc.aio.Channel, pb_grpc.TierServerStub, InferStream]:
        """The channel to ``host`` on this event loop, its stub (Prepare), and its InferStream
        (requests go over it: stream.py)."""
        return self._channels.get(host)

    def _is_down(self, host: str) -> bool:
        return time.monotonic() < self._down.get(host, 0.0)

    def _mark_down(self, host: str) -> None:
        self._down[host] = time.monotonic() + self.retry_after_s
        self._ready = {r for r in self._ready if r[1] != host}  # it may come back empty

    async def aprepare(self, force: bool = False) -> None:
        """Send the plan to every host of every tier, last tier first; idempotent on the
        servers. A host that cannot be reached is skipped (and skipped by requests for
        ``retry_after_s``); a tier none of whose hosts can be reached is Unreachable."""
        if not force and all(any((k, h) in self._ready for h in hosts)
                             for k, hosts in enumerate(self.hosts, 1)):
            return  # the common case, every request: each tier has a prepared host
        lock = self._prepare_locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with lock:
            if force:
                self._ready.clear()
            for k in range(self.plan.stages - 1, 0, -1):
                prepared, failed = await self.aprepare_hosts(k, self.hosts[k - 1])
                if not prepared:
                    raise failed[0]

    async def aprepare_hosts(self, k: int, hosts: Sequence[str],
                             next_hosts: Sequence[str] | None = None,
                             force: bool = False) -> tuple[tuple[str, ...], list[Unreachable]]:
        """Prepare stage ``k`` on each of ``hosts`` not yet prepared (all of them with
        ``force``), forwarding to ``next_hosts`` (the next tier's hosts by default): the
        hosts prepared, and why each other one was not. A host that failed recently is not
        tried again (unless forced); one that cannot be reached is marked so."""
        if next_hosts is None:
            next_hosts = self.hosts[k] if k < len(self.hosts) else ()
        request = prepare_request(self.plan, self.plan.to_json(), k, next_hosts,
                                  self.codecs[k] if k < len(self.codecs) else "raw")
        failed: list[Unreachable] = []
        for host in hosts:
            if (k, host) in self._ready and not force:
                continue
            if self._is_down(host) and not force:
                failed.append(Unreachable(f"{host} failed recently; retrying after "
                                          f"{self.retry_after_s} s", host))
                continue
            try:
                await prepare_on(self._host(host)[1], request, host, self.plan,
                                 self.prepare_timeout(), self._metadata)
            except Unreachable as exc:
                self._mark_down(host)
                failed.append(exc)
                continue
            self._down.pop(host, None)
            self._ready.add((k, host))
        return tuple(h for h in hosts if (k, h) in self._ready), failed

    def prepare_timeout(self) -> float:
        return max(60.0, self.deadline_s or 0.0)  # a first build traces the model

    # --- hand-over (handover.py) --------------------------------------------------------------

    def hand_over(self, hosts: Sequence[str] | str, tier: str | None = None, warmups: int = 1,
                  drain_timeout_s: float = 30.0) -> HandOver:
        return self._run(self.ahand_over(hosts, tier, warmups, drain_timeout_s))

    async def ahand_over(self, hosts: Sequence[str] | str, tier: str | None = None,
                         warmups: int = 1, drain_timeout_s: float = 30.0) -> HandOver:
        """Move ``tier``'s stage (the device's next tier by default) to ``hosts`` while
        requests go on, make before break (handover.py); HandOverError, and nothing moved,
        when none of them can be prepared."""
        return await hand_over(self, hosts, tier, warmups, drain_timeout_s)

    def set_hosts(self, k: int, hosts: Sequence[str]) -> None:
        """Stage ``k``'s hosts, for requests from now on."""
        self.hosts = self.hosts[:k - 1] + (tuple(hosts),) + self.hosts[k:]
        self.endpoints = tuple(h[0] for h in self.hosts)

    def in_flight_on(self, hosts: Sequence[str] | None) -> set[str]:
        """The requests (as "id@host") now waiting on one of ``hosts`` (on any host: None)."""
        return {rid for rid, h in self._in_flight.items() if hosts is None or h in hosts}

    def stream_to(self, host: str) -> InferStream:
        return self._host(host)[2]


    async def ainfer(self, *inputs: torch.Tensor, hedge: bool = False,
                     hedge_after_s: float = 0.0) -> tuple[Any, Measurement]:
        """The model's output for ``inputs`` and how the request went. ``hedge``: while the
        remote part is under way, the device runs the rest of the model too, and the first
        to finish answers (the other is stopped: the remote call cancelled, the device's run
        between two of its nodes). A request sent into a stalled link then costs the
        all-device time; ``Measurement.hedged`` says it was raced, ``fallback`` that the
        device won. ``hedge_after_s``: the device's run starts only if no answer has come
        that long after sending (a backup request: the device stays idle when the remote
        part is on time)."""
        if isinstance(hedge_after_s, bool) or not isinstance(hedge_after_s, (int, float)) \
                or not 0 <= hedge_after_s < math.inf:
            raise ValueError(f"hedge_after_s {hedge_after_s!r} must be a number of seconds "
                             ">= 0 (0: race from the start)")
        t0 = time.perf_counter()
        rid = f"{self._id_prefix}{next(self._ids):x}"
        lay = self.layout
        env: dict[str, Any] = dict(zip(self.graph.inputs, inputs))
        if len(inputs) != len(self.graph.inputs):
            raise InputError(f"{self.plan.model} takes {len(self.graph.inputs)} inputs "
                             f"{list(self.graph.inputs)}, got {len(inputs)}")
        try:
            wire.check_values(env, self.graph.inputs, lay.signatures, "model input")
        except wire.WireError as exc:
            raise InputError(str(exc)) from None
        t = time.perf_counter()
        env.update(await run_local(self._pool, lay.stages[0], env))
        device_s = time.perf_counter() - t
        encode_s = decode_s = rpc_s = 0.0
        hops: tuple[Hop, ...] = ()
        servers: tuple[wire.ServerTiming, ...] = ()
        reason = ""
        host, failovers = "", 0
        fallback_s = 0.0
        hedged = hedge and self._remote
        if self._remote:
            t = time.perf_counter()
            request, sent = self._request(env, rid)
            encode_s = time.perf_counter() - t
            try:
                if hedged:
                    remote, local = await race(self._remote_part(request, sent, t0), self._pool,
                                               lay.stages[1:], env, hedge_after_s,
                                               self.fallback, self.plan.tiers, sent)
                else:
                    remote, local = await self._remote_part(request, sent, t0), None
                if remote is not None:
                    back, decode_s, rpc_s, hops, servers, host, failovers = remote
                    env.update(back)
                else:  # the device answered
                    produced, fallback_s, hops, reason, failovers = local
                    env.update(produced)
            except Unreachable as exc:
                if not self.fallback:
                    raise RemoteError(grpc.StatusCode.UNAVAILABLE, exc.reason,
                                      exc.endpoint) from None
                reason, failovers = exc.reason, exc.failovers
                t = time.perf_counter()
                for stage in lay.stages[1:]:
                    env.update(await run_local(self._pool, stage, env))
                fallback_s = time.perf_counter() - t
        output = assemble_output(self.graph, env)
        return output, Measurement(rid, device_s, encode_s, decode_s, rpc_s,
                                   time.perf_counter() - t0, hops, servers, bool(reason), reason,
                                   fallback_s, host, failovers, hedged)

    def _request(self, env: Mapping[str, Any], rid: str) -> tuple[pb.InferRequest, int]:
        """The first tier's request, and its tensor frame bytes."""
        request = pb.InferRequest(plan_id=self.plan.plan_id, stage=1, request_id=rid,
                                  reply_codec=self.reply_codec, codec=self.codecs[0])
        _, sent = wire.encode_values({v: env[v] for v in self.layout.receives[1]},
                                     self.codecs[0], request.values)
        self.last_request = request  # what a hand-over warms the new hosts with
        return request, sent

    async def _remote_part(self, request: pb.InferRequest, sent: int, t0: float) -> tuple:
        return await remote_part(self, request, sent, t0)

    async def abench(self, inputs: torch.Tensor | Sequence[torch.Tensor], requests: int = 20,
                     concurrency: int = 1, warmup: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> BenchResult:
        """``requests`` requests with ``concurrency`` in flight; latency percentiles, throughput."""
        if requests < 1 or concurrency < 1:
            raise ValueError(f"requests and concurrency must be >= 1, got {requests}, "
                             f"{concurrency}")
        args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        if self._remote:
            try:
                await self.aprepare()
            except Unreachable:
                pass  # the requests fall back, and say so
        return await run_bench(self.ainfer, args, requests, concurrency, warmup, progress)


async def _settle() -> None:
    """Cancel and finish the tasks grpc leaves behind a closed call (as asyncio.run does),
    so that closing the loop destroys none still pending."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

