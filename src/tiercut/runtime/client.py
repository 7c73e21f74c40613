"""The device side: run stage 0 here, send the rest up the chain of tier servers.

``SplitClient(plan, endpoints)`` prepares the servers once (last tier first, so that every
forwarding target exists), then for each request runs the device stage locally, encodes what
the first server needs, and decodes the model outputs that come back. If the next tier cannot
be reached (UNAVAILABLE), does not answer in time (DEADLINE_EXCEEDED or ``deadline_s``), and
``fallback`` is on, the client finishes the request itself by running the remaining stages (it
has the whole model): no request is lost, and the Measurement says so.

Transfer time of a hop, as measured: the sender's round trip of the Infer RPC minus the
receiver's reported handling time (``Timing.total_s``: from receiving the request to having the
reply ready, which includes its decode, compute, forwarding and encode). What remains is the
transport both ways: serialisation in gRPC, the network out and back, and the reply's trip.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import grpc
import torch

from .. import codecs
from ..errors import TiercutError
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .server import MAX_MESSAGE_BYTES, channel_options, keep_freed_memory
from .stageplan import StagePlan, assemble_output, layout

_FALLBACK_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


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


class SplitClient:
    """Run ``plan`` with stage 0 here and stage k on ``endpoints[k-1]``.

    ``codec``: one codec name for every hop, or one per hop; ``reply_codec`` for the outputs
    coming back. ``deadline_s`` bounds the remote part of each request.
    """

    def __init__(self, plan: StagePlan | Mapping[str, Any] | str, endpoints: Sequence[str],
                 codec: str | Sequence[str] = "raw", deadline_s: float | None = None,
                 fallback: bool = True, reply_codec: str = "raw",
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, retry_after_s: float = 1.0,
                 device_workers: int = 1, input_shape: Sequence[int] | None = None,
                 tune_malloc: bool = True):
        if isinstance(plan, str):
            plan = StagePlan.from_json(plan, input_shape)
        elif not isinstance(plan, StagePlan):
            plan = StagePlan.from_dict(dict(plan), input_shape)
        self.plan = plan
        self.endpoints = tuple(endpoints)
        if len(self.endpoints) != plan.stages - 1:
            raise ValueError(f"the plan runs on tiers {list(plan.tiers)}: give "
                             f"{plan.stages - 1} endpoints (one per tier after "
                             f"{plan.tiers[0]!r}), got {len(self.endpoints)}")
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
        self._pool = concurrent.futures.ThreadPoolExecutor(device_workers,
                                                           thread_name_prefix="tiercut-device")
        # channels belong to the event loop that made them: one set per loop
        self._stubs: dict[int, tuple[asyncio.AbstractEventLoop, list[grpc.aio.Channel],
                                     list[pb_grpc.TierServerStub]]] = {}
        self._prepared = False
        self._prepare_locks: dict[int, asyncio.Lock] = {}
        self._down_until = 0.0
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

    def infer(self, *inputs: torch.Tensor) -> tuple[Any, Measurement]:
        return self._run(self.ainfer(*inputs))

    def prepare(self) -> None:
        self._run(self.aprepare())

    def bench(self, inputs: torch.Tensor | Sequence[torch.Tensor], requests: int = 20,
              concurrency: int = 1, warmup: int = 1,
              progress: Callable[[int, int], None] | None = None) -> BenchResult:
        return self._run(self.abench(inputs, requests, concurrency, warmup, progress))

    def close(self) -> None:
        if self._loop is not None:
            self._run(self.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)  # type: ignore[union-attr]
            self._loop.close()
            self._loop = None
        self._pool.shutdown(wait=False)

    def __enter__(self) -> "SplitClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- async API ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._stubs.pop(id(loop), None)
        if entry:
            for channel in entry[1]:
                await channel.close()

    def _stub_list(self) -> list[pb_grpc.TierServerStub]:
        loop = asyncio.get_running_loop()
        entry = self._stubs.get(id(loop))
        if entry is None or entry[0] is not loop:
            options = channel_options(self.max_message_bytes)
            channels = [grpc.aio.insecure_channel(e, options=options) for e in self.endpoints]
            entry = (loop, channels, [pb_grpc.TierServerStub(c) for c in channels])
            self._stubs[id(loop)] = entry
        return entry[2]

    async def aprepare(self, force: bool = False) -> None:
        """Send the plan to every server, last tier first; idempotent on the servers."""
        lock = self._prepare_locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with lock:
            if self._prepared and not force:
                return
            stubs = self._stub_list()
            plan_json = self.plan.to_json()
            for k in range(self.plan.stages - 1, 0, -1):
                nxt = self.endpoints[k] if k < len(self.endpoints) else ""
                fwd = self.codecs[k] if k < len(self.codecs) else "raw"
                request = pb.PrepareRequest(plan_json=plan_json, stage=k, next_endpoint=nxt,
                                            forward_codec=fwd)
                try:
                    reply = await stubs[k - 1].Prepare(request, timeout=self._prepare_timeout())
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _FALLBACK_CODES:
                        raise _Unreachable(f"Prepare on {self.endpoints[k - 1]} "
                                           f"({self.plan.tiers[k]}): {exc.code().name}: "
                                           f"{exc.details()}", self.endpoints[k - 1]) from None
                    raise RemoteError(exc.code(), exc.details(), self.endpoints[k - 1]) from None
                if reply.plan_id != self.plan.plan_id:
                    raise RemoteError(grpc.StatusCode.INTERNAL, f"plan id {reply.plan_id[:12]} "
                                      f"differs from ours {self.plan.plan_id[:12]}",
                                      self.endpoints[k - 1])
            self._prepared = True

    def _prepare_timeout(self) -> float:
        return max(60.0, self.deadline_s or 0.0)  # a first build traces the model

    async def ainfer(self, *inputs: torch.Tensor) -> tuple[Any, Measurement]:
        t0 = time.perf_counter()
        rid = uuid.uuid4().hex
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
        if self._remote:
            try:
                if time.monotonic() < self._down_until:
                    raise _Unreachable(f"{self.endpoints[0]} failed recently; retrying after "
                                       f"{self.retry_after_s} s", self.endpoints[0])
                back, encode_s, decode_s, rpc_s, hops, servers = await self._remote_part(
                    env, rid, t0)
                env.update(back)
            except _Unreachable as exc:
                if not self.fallback:
                    raise RemoteError(grpc.StatusCode.UNAVAILABLE, exc.reason,
                                  exc.endpoint) from None
                reason = exc.reason
        fallback_s = 0.0
        if reason:
            t = time.perf_counter()
            for stage in lay.stages[1:]:
                env.update(await self._run_local(stage, env))
            fallback_s = time.perf_counter() - t
        output = assemble_output(self.graph, env)
        return output, Measurement(rid, device_s, encode_s, decode_s, rpc_s,
                                   time.perf_counter() - t0, hops, servers, bool(reason), reason,
                                   fallback_s)

    async def _run_local(self, stage: Any, env: Mapping[str, Any]) -> dict[str, Any]:
        if not stage.nodes:  # nothing to compute: not worth a thread hop
            return {}
        return await asyncio.get_running_loop().run_in_executor(self._pool, _run_stage, stage,
                                                                env)

    async def _remote_part(self, env: dict[str, Any], rid: str, t0: float) -> tuple:
        lay = self.layout
        for attempt in (0, 1):
            try:
                await self.aprepare(force=attempt > 0)
            except _Unreachable:
                self._down_until = time.monotonic() + self.retry_after_s
                raise
            t = time.perf_counter()
            request = pb.InferRequest(plan_id=self.plan.plan_id, stage=1, request_id=rid,
                                      reply_codec=self.reply_codec, codec=self.codecs[0])
            _, sent = wire.encode_values({v: env[v] for v in lay.receives[1]}, self.codecs[0],
                                         request.values)
            encode_s = time.perf_counter() - t
            timeout = None
            if self.deadline_s is not None:
                timeout = self.deadline_s - (time.perf_counter() - t0)
                if timeout <= 0:
                    raise _Unreachable(f"deadline of {self.deadline_s} s passed before "
                                       "sending", self.endpoints[0])
            t = time.perf_counter()
            try:
                reply = await self._stub_list()[0].Infer(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.NOT_FOUND and "unknown plan id" in (
                        exc.details() or "") and attempt == 0:
                    continue  # a server restarted and forgot the plan: prepare again
                if code in _FALLBACK_CODES:
                    if code == grpc.StatusCode.UNAVAILABLE:
                        self._prepared = False  # it may come back empty
                        self._down_until = time.monotonic() + self.retry_after_s
                    raise _Unreachable(f"{self.endpoints[0]}: {code.name}: "
                                       f"{exc.details()}", self.endpoints[0]) from None
                raise RemoteError(code, exc.details(), self.endpoints[0]) from None
            rpc_s = time.perf_counter() - t
            t = time.perf_counter()
            try:
                back, returned = wire.decode_values(reply.outputs, self.limits)
                wire.check_values(back, self._expected_back, lay.signatures,
                                  f"reply from {self.endpoints[0]}")
            except wire.WireError as exc:
                raise RemoteError(grpc.StatusCode.INTERNAL, str(exc), self.endpoints[0]) from None
            decode_s = time.perf_counter() - t
            servers = tuple(wire.timing_from_pb(m) for m in reply.timings)
            return back, encode_s, decode_s, rpc_s, self._hops(sent, returned, rpc_s,
                                                               servers), servers
        raise AssertionError("unreachable")

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


def _pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
