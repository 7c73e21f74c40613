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

Transfer time of a hop, as measured: the sender's round trip of the Infer request minus the
receiver's reported handling time (``Timing.total_s``: from receiving the request to having the
reply ready, which includes its decode, compute, forwarding and encode). What remains is the
transport both ways: serialisation in gRPC, the network out and back, and the reply's trip.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import grpc
import torch
import torch.fx as fx

from .. import codecs
from ..errors import TiercutError
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .security import ClientSecurity, metadata, open_channel
from .server import MAX_MESSAGE_BYTES, channel_options, keep_freed_memory
from ..split import assemble_output
from .stageplan import StagePlan, layout
from .stream import CallFailed, InferStream

_FALLBACK_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.RESOURCE_EXHAUSTED,  # overloaded: shed, finish elsewhere
                   grpc.StatusCode.CANCELLED)  # a server going away cancelled the call
# reconnect soon after a server comes back (gRPC's default backoff grows to 120 s)
_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
              ("grpc.max_reconnect_backoff_ms", 1000)]

Endpoints = Sequence["str | Sequence[str]"] | Mapping[str, "str | Sequence[str]"]


def tier_hosts(endpoints: Endpoints, tiers: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """One tuple of hosts per tier after the device, from any of the accepted forms."""
    if isinstance(endpoints, Mapping):
        unknown = [t for t in endpoints if t not in tiers[1:]]
        if unknown:
            raise ValueError(f"endpoints name tiers {unknown} that are not among the plan's "
                             f"tiers after the device {list(tiers[1:])}")
        missing = [t for t in tiers[1:] if t not in endpoints]
        if missing:
            raise ValueError(f"endpoints give no host for tiers {missing}")
        items = [endpoints[t] for t in tiers[1:]]
    else:
        items = list(endpoints)
    hosts = tuple((e,) if isinstance(e, str) else tuple(e) for e in items)
    for t, h in zip(tiers[1:], hosts):
        if not h or not all(isinstance(e, str) and e for e in h):
            raise ValueError(f"tier {t!r}: give at least one host:port, got {list(h)}")
    return hosts


class RemoteError(TiercutError):
    """A tier server refused a request (bad input, unknown plan, ...); not a reason to fall back."""

    def __init__(self, code: grpc.StatusCode, details: str, endpoint: str):
        super().__init__(f"{endpoint} answered {code.name}: {details}")
        self.code, self.details, self.endpoint = code, details, endpoint


class InputError(TiercutError, ValueError):
    """Inputs that do not fit the plan's model (the servers would refuse them)."""


@dataclass(frozen=True)
class Hop:
    src: str  # tier
    dst: str
    bytes_sent: int  # tensor frame bytes sent up this hop
    bytes_returned: int  # output frame bytes that came back down it
    seconds: float  # sender's RPC round trip minus the receiver's handling time


@dataclass(frozen=True)
class Measurement:
    request_id: str
    device_s: float  # stage 0 on the device
    encode_s: float  # encoding on the device
    decode_s: float  # decoding the outputs on the device
    rpc_s: float  # round trip of the first Infer (0 when none was sent)
    total_s: float
    hops: tuple[Hop, ...] = ()
    servers: tuple[wire.ServerTiming, ...] = ()
    fallback: bool = False
    fallback_reason: str = ""
    fallback_s: float = 0.0  # running the remaining stages locally
    endpoint: str = ""  # the first tier's host that answered ("" when none did)
    failovers: int = 0  # hosts of the first tier tried and given up on before the answer
    hedged: bool = False  # raced against the device (ainfer's hedge); fallback: it won

    @property
    def loads(self) -> dict[str, wire.Load]:
        return {t.tier: t.load for t in self.servers}

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, where, figure) rows for a printed table."""
        ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
        rows = [("device compute", "device", ms(self.device_s)),
                ("device encode/decode", "device", ms(self.encode_s + self.decode_s))]
        for h in self.hops:
            rows.append((f"hop {h.src}->{h.dst}", f"{h.bytes_sent} B up, {h.bytes_returned} B back",
                         ms(h.seconds)))
        for t in self.servers:
            rows.append((f"{t.tier} compute", t.server, f"{ms(t.compute_s)} (queue "
                         f"{ms(t.queue_s)}, dec {ms(t.decode_s)}, enc {ms(t.encode_s)})"))
        if self.fallback:
            rows.append(("FALLBACK (local)", self.fallback_reason[:60], ms(self.fallback_s)))
        rows.append(("total", "", ms(self.total_s)))
        return rows


@dataclass(frozen=True)
class BenchResult:
    requests: int
    concurrency: int
    seconds: float
    throughput: float  # requests per second
    latency_s: Mapping[str, float]  # mean, p50, p90, p99, max
    fallbacks: int
    measurements: tuple[Measurement, ...] = field(default=(), repr=False)


class _Unreachable(Exception):
    def __init__(self, reason: str, endpoint: str):
        super().__init__(reason)
        self.reason, self.endpoint = reason, endpoint
        self.failovers = 0  # hosts given up on before this


class SplitClient:
    """Run ``plan`` with stage 0 here and stage k on ``endpoints[k-1]``.

    ``codec``: one codec name for every hop, or one per hop; ``reply_codec`` for the outputs
    coming back. ``deadline_s`` bounds the remote part of each request; ``host_timeout_s``
    bounds the try on one host of the first tier before the next one is tried.
    ``device_executor``: where the device's stages run (the client's own pool of
    ``device_workers`` threads when None); the client does not shut down one it was given.
    """

    def __init__(self, plan: StagePlan | Mapping[str, Any] | str, endpoints: Endpoints,
                 codec: str | Sequence[str] = "raw", deadline_s: float | None = None,
                 fallback: bool = True, reply_codec: str = "raw",
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, retry_after_s: float = 1.0,
                 device_workers: int = 1, input_shape: Sequence[int] | None = None,
                 tune_malloc: bool = True, security: ClientSecurity | None = None,
                 client_id: str | None = None, host_timeout_s: float | None = None,
                 device_executor: concurrent.futures.Executor | None = None):
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
        # channels belong to the event loop that made them: one set per loop
        self._per_loop: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, tuple[
            grpc.aio.Channel, pb_grpc.TierServerStub, InferStream]]]] = {}
        self._ready: set[tuple[int, str]] = set()  # (stage, host) prepared
        self._prepare_locks: dict[int, asyncio.Lock] = {}
        self._down: dict[str, float] = {}  # host -> monotonic time until which it is skipped
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
        entry = self._per_loop.pop(id(asyncio.get_running_loop()), None)
        if entry:
            for channel, _, stream in entry[1].values():
                stream.close()
                await channel.close()

    def _host(self, host: str) -> tuple[grpc.aio.Channel, pb_grpc.TierServerStub, InferStream]:
        """The channel to ``host`` on this event loop, its stub (Prepare), and its InferStream
        (requests go over it: stream.py)."""
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, {})
            self._per_loop[id(loop)] = entry
        if host not in entry[1]:
            channel = open_channel(host, self.security,
                                   channel_options(self.max_message_bytes) + _RECONNECT)
            entry[1][host] = (channel, pb_grpc.TierServerStub(channel),
                              InferStream(channel, self._metadata))
        return entry[1][host]

    def _is_down(self, host: str) -> bool:
        return time.monotonic() < self._down.get(host, 0.0)

    def _mark_down(self, host: str) -> None:
        self._down[host] = time.monotonic() + self.retry_after_s
        self._ready = {r for r in self._ready if r[1] != host}  # it may come back empty

    async def aprepare(self, force: bool = False) -> None:
        """Send the plan to every host of every tier, last tier first; idempotent on the
        servers. A host that cannot be reached is skipped (and skipped by requests for
        ``retry_after_s``); a tier none of whose hosts can be reached is _Unreachable."""
        if not force and all(any((k, h) in self._ready for h in hosts)
                             for k, hosts in enumerate(self.hosts, 1)):
            return  # the common case, every request: each tier has a prepared host
        lock = self._prepare_locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with lock:
            if force:
                self._ready.clear()
            plan_json = self.plan.to_json()
            for k in range(self.plan.stages - 1, 0, -1):
                hosts = self.hosts[k - 1]
                nxt = self.hosts[k] if k < len(self.hosts) else ()
                fwd = self.codecs[k] if k < len(self.codecs) else "raw"
                request = pb.PrepareRequest(plan_json=plan_json, stage=k,
                                            next_endpoint=nxt[0] if nxt else "",
                                            next_alternates=nxt[1:], forward_codec=fwd)
                first: _Unreachable | None = None
                for host in hosts:
                    if (k, host) in self._ready:
                        continue
                    if self._is_down(host):
                        first = first or _Unreachable(
                            f"{host} failed recently; retrying after {self.retry_after_s} s",
                            host)
                        continue
                    try:
                        reply = await self._host(host)[1].Prepare(
                            request, timeout=self._prepare_timeout(), metadata=self._metadata)
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in _FALLBACK_CODES:
                            self._mark_down(host)
                            first = first or _Unreachable(
                                f"Prepare on {host} ({self.plan.tiers[k]}): "
                                f"{exc.code().name}: {exc.details()}", host)
                            continue
                        raise RemoteError(exc.code(), exc.details(), host) from None
                    if reply.plan_id != self.plan.plan_id:
                        raise RemoteError(grpc.StatusCode.INTERNAL, f"plan id "
                                          f"{reply.plan_id[:12]} differs from ours "
                                          f"{self.plan.plan_id[:12]}", host)
                    self._ready.add((k, host))
                if not any((k, h) in self._ready for h in hosts):
                    assert first is not None
                    raise first

    def _prepare_timeout(self) -> float:
        return max(60.0, self.deadline_s or 0.0)  # a first build traces the model

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
        env.update(await self._run_local(lay.stages[0], env))
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
                    remote, local = await self._race(request, sent, env, t0, hedge_after_s)
                else:
                    remote, local = await self._remote_part(request, sent, t0), None
                if remote is not None:
                    back, decode_s, rpc_s, hops, servers, host, failovers = remote
                    env.update(back)
                else:  # the device answered
                    produced, fallback_s, hops, reason, failovers = local
                    env.update(produced)
            except _Unreachable as exc:
                if not self.fallback:
                    raise RemoteError(grpc.StatusCode.UNAVAILABLE, exc.reason,
                                      exc.endpoint) from None
                reason, failovers = exc.reason, exc.failovers
                t = time.perf_counter()
                for stage in lay.stages[1:]:
                    env.update(await self._run_local(stage, env))
                fallback_s = time.perf_counter() - t
        output = assemble_output(self.graph, env)
        return output, Measurement(rid, device_s, encode_s, decode_s, rpc_s,
                                   time.perf_counter() - t0, hops, servers, bool(reason), reason,
                                   fallback_s, host, failovers, hedged)

    async def _race(self, request: pb.InferRequest, sent: int, env: Mapping[str, Any],
                    t0: float, after_s: float) -> tuple[tuple | None, tuple | None]:
        """The remote part and, after ``after_s`` without an answer, the rest of the model on
        the device (``hedge``): (remote result, None), or (None, (values, device seconds, the
        first hop so far, why, failovers)) when the device answers (first, or because no host
        could)."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        t = time.perf_counter()
        remote = loop.create_task(self._remote_part(request, sent, t0))
        if after_s > 0:
            try:
                await asyncio.wait((remote,), timeout=after_s)
            except BaseException:  # (the request itself cancelled)
                remote.cancel()
                raise
            if remote.done():  # in time, or failed: as an unhedged request (fallback and all)
                return remote.result(), None
        local = loop.run_in_executor(self._pool, _run_rest, self.layout.stages[1:], dict(env),
                                     stop)
        try:
            await asyncio.wait((remote, local), return_when=asyncio.FIRST_COMPLETED)
            if remote.done() and isinstance(remote.exception(), _Unreachable) and self.fallback:
                await asyncio.wait((local,))  # the device's run is the fallback, under way
            elif not remote.done() and local.exception() is not None:
                await asyncio.wait((remote,))  # the device's run failed: the remote answers
        finally:
            stop.set()
            remote.cancel()
            local.add_done_callback(_consume)  # a stopped run ends in _Stopped, unread
        why, failovers = "hedged: the device finished first", 0
        if remote.done() and not remote.cancelled():
            exc = remote.exception()
            if exc is None:
                return remote.result(), None
            if not isinstance(exc, _Unreachable) or not self.fallback \
                    or local.exception() is not None:
                raise exc  # (an unreachable host without fallback: ainfer says so)
            why, failovers = f"hedged, and {exc.reason}", exc.failovers
        seconds = time.perf_counter() - t
        tiers = self.plan.tiers
        return None, (local.result(), seconds, (Hop(tiers[0], tiers[1], sent, 0, seconds),),
                      why, failovers)

    async def _run_local(self, stage: Any, env: Mapping[str, Any]) -> dict[str, Any]:
        if not stage.nodes:  # nothing to compute: not worth a thread hop
            return {}
        return await asyncio.get_running_loop().run_in_executor(self._pool, _run_stage, stage,
                                                                env)

    def _request(self, env: Mapping[str, Any], rid: str) -> tuple[pb.InferRequest, int]:
        """The first tier's request, and its tensor frame bytes."""
        request = pb.InferRequest(plan_id=self.plan.plan_id, stage=1, request_id=rid,
                                  reply_codec=self.reply_codec, codec=self.codecs[0])
        _, sent = wire.encode_values({v: env[v] for v in self.layout.receives[1]},
                                     self.codecs[0], request.values)
        return request, sent

    async def _remote_part(self, request: pb.InferRequest, sent: int, t0: float) -> tuple:
        """Send the rest to the first tier: its hosts in order, skipping those that failed
        recently; _Unreachable (with the last host's reason) when none answers."""
        lay = self.layout
        hosts = self.hosts[0]
        up = [h for h in hosts if not self._is_down(h)]
        if not up:
            raise _Unreachable(f"{hosts[0]} failed recently; retrying after "
                               f"{self.retry_after_s} s", hosts[0])
        last: _Unreachable | None = None
        failovers = 0
        reprepared = False
        queue = list(up)
        while queue:
            host = queue[0]
            await self.aprepare()
            if (1, host) not in self._ready:  # its Prepare just failed: the next one
                queue.pop(0)
                failovers += 1
                continue
            timeout = self.host_timeout_s
            if self.deadline_s is not None:
                left = self.deadline_s - (time.perf_counter() - t0)
                if left <= 0:
                    raise last or _Unreachable(f"deadline of {self.deadline_s} s passed "
                                               f"before sending to {host}", host)
                timeout = left if timeout is None else min(timeout, left)
            t = time.perf_counter()
            try:
                reply = await self._host(host)[2].infer(request, timeout)
            except CallFailed as exc:
                code = exc.code
                if code == grpc.StatusCode.NOT_FOUND and "unknown plan id" in exc.details \
                        and not reprepared:
                    reprepared = True  # a server restarted and forgot the plan: prepare again
                    self._ready.clear()
                    continue
                if code not in _FALLBACK_CODES:
                    raise RemoteError(code, exc.details, host) from None
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._mark_down(host)
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and exc.load is not None:
                    self.last_load[host] = exc.load
                last = _Unreachable(f"{host}: {code.name}: {exc.details}", host)
                queue.pop(0)
                failovers += 1
                continue
            rpc_s = time.perf_counter() - t
            t = time.perf_counter()
            try:
                back, returned = wire.decode_values(reply.outputs, self.limits)
                wire.check_values(back, self._expected_back, lay.signatures,
                                  f"reply from {host}")
            except wire.WireError as exc:
                raise RemoteError(grpc.StatusCode.INTERNAL, str(exc), host) from None
            decode_s = time.perf_counter() - t
            servers = tuple(wire.timing_from_pb(m) for m in reply.timings)
            self.last_load[host] = wire.load_from_pb(reply.load)
            return (back, decode_s, rpc_s, self._hops(sent, returned, rpc_s, servers), servers,
                    host, failovers)
        if last is None:
            last = _Unreachable(f"no host of tier {self.plan.tiers[1]!r} could be prepared",
                                hosts[0])
        last.failovers = failovers
        raise last

    def _hops(self, sent: int, returned: int, rpc_s: float,
              servers: tuple[wire.ServerTiming, ...]) -> tuple[Hop, ...]:
        tiers = self.plan.tiers
        if not servers:
            return ()
        hops = [Hop(tiers[0], tiers[1], sent, returned, rpc_s - servers[0].total_s)]
        for j in range(1, len(servers)):
            up, down = servers[j - 1], servers[j]
            hops.append(Hop(tiers[j], tiers[j + 1], up.bytes_forwarded, down.bytes_out,
                            up.forward_s - down.total_s))
        return tuple(hops)

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
            except _Unreachable:
                pass  # the requests fall back, and say so
        for _ in range(warmup):
            await self.ainfer(*args)
        results: list[Measurement] = []
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests:
                next_index += 1
                results.append((await self.ainfer(*args))[1])
                if progress:
                    progress(len(results), requests)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
        seconds = time.perf_counter() - t
        lat = sorted(m.total_s for m in results)
        return BenchResult(requests, concurrency, seconds, requests / seconds,
                           {"mean": statistics.fmean(lat), "p50": _pct(lat, 50),
                            "p90": _pct(lat, 90), "p99": _pct(lat, 99), "max": lat[-1]},
                           sum(m.fallback for m in results), tuple(results))


def _run_stage(stage: Any, env: Mapping[str, Any]) -> dict[str, Any]:
    with torch.inference_mode():
        return stage.run(env)


class _Stopped(Exception):
    """A hedge's device run stopped because the remote answer came first."""


class _StoppableRun(fx.Interpreter):
    """A stage's graph run node by node (the same calls its module makes, so the same
    values), checking ``stop`` before each node."""

    def __init__(self, module: fx.GraphModule, stop: threading.Event):
        super().__init__(module)
        self.stop = stop

    def run_node(self, n: fx.Node) -> Any:
        if self.stop.is_set():
            raise _Stopped()
        return super().run_node(n)


def _run_rest(stages: Sequence[Any], env: dict[str, Any],
              stop: threading.Event) -> dict[str, Any]:
    """Stages 1.. on the device, until done or ``stop``; the values they produced."""
    produced: dict[str, Any] = {}
    with torch.inference_mode():
        for stage in stages:
            if not stage.nodes:
                continue
            results = _StoppableRun(stage.module, stop).run(*(env[n] for n in stage.inputs))
            values = dict(zip(stage.outputs, results))
            env.update(values)
            produced.update(values)
    return produced


async def _settle() -> None:
    """Cancel and finish the tasks grpc leaves behind a closed call (as asyncio.run does),
    so that closing the loop destroys none still pending."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _consume(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # read, so that a stopped run is not reported as unhandled


def _pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
