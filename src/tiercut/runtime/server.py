"""The tier server: runs its stage of a plan, forwards to the next tier, returns the outputs.

A server hosts a fixed list of models (zoo names or ``module:factory`` paths given at start,
never anything received). ``Prepare`` sends it a plan once; it builds and caches the stage.
``Infer`` then carries the plan id and the values the stage needs: the server decodes and
checks them (names, shapes, dtypes) before running anything, runs its stage on a bounded
worker pool so the event loop keeps serving, forwards what later stages need to the next tier,
and returns the model outputs known after the chain with every server's timings and load.
``InferStream`` does the same for many requests on one long-lived call (what SplitClient and
forwarding tiers use, stream.py): each request is answered in-band with its reply or the
status the unary ``Infer`` would have given, and a bad request does not end the stream.

Errors map to gRPC status codes (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE,
INTERNAL) with a message naming the value, plan or endpoint; the server keeps serving.

Hostile clients and overload (docs: security.py for TLS and the token):
- every message is at most ``max_message_bytes`` (gRPC refuses bigger ones before decoding);
  every tensor frame is checked against ``limits`` (elements, bytes, ndim) before allocation.
- ``max_in_flight`` bounds the Infer requests being handled at once (decoding, queued for a
  worker, computing or forwarding): one more is answered RESOURCE_EXHAUSTED at once, with the
  server's load in the message and in the ``tiercut-load`` trailer (on a stream, in the
  answer's ``load``), so the client can finish locally or re-plan. The queue for compute workers is therefore at most
  ``max_in_flight - workers`` long.
- ``max_per_client`` bounds the requests of one client in flight. A client is named by its
  ``tiercut-client-id`` metadata (SplitClient sends one per instance; a forwarding tier passes
  on its caller's), or else by its peer address without the port. The id is not
  authenticated: it shares capacity fairly among cooperating clients; ``max_in_flight`` is
  what protects the server.
- a request whose deadline passes while it waits for a worker is dropped unrun
  (DEADLINE_EXCEEDED, counted in ``Load.expired``); on a stream the deadline is the request's
  ``timeout_s``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import grpc
import torch

from .. import codecs
from ..errors import TiercutError, UnknownModelError
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .security import (CLIENT_ID_HEADER, ClientSecurity, ServerSecurity, check_bind,
                       open_channel)
from .security import metadata as security_metadata
from .stageplan import Layout, PlanError, StagePlan, input_elements, layout
from .stream import CallFailed, InferStream

MAX_MESSAGE_BYTES = 256 << 20
_EWMA = 0.2  # weight of the newest compute time in the service-time average


def keep_freed_memory(max_bytes: int = 256 << 20) -> bool:
    """Ask glibc to keep freed buffers of up to 32 MiB in the heap instead of giving them back.

    Every request allocates and frees frames of the tensors' size; by default glibc returns
    them to the kernel, and the next request pays a page fault per 4 KiB touched (measured
    here: 0.96 ms to encode and wrap 1 MiB, 0.055 ms with this). The process keeps up to
    ``max_bytes`` of freed memory. Process-wide; a no-op (False) where libc is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold,
                                                                      max_bytes))


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0)]


# --- backends: what runs a stage ---------------------------------------------------------------

class StageRunner(Protocol):
    """split.Stage, or anything with its interface (an ONNX Runtime session, ...)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]: ...


BackendFactory = Callable[[StagePlan, Layout, int], StageRunner]


def _torch_backend(plan: StagePlan, lay: Layout, k: int) -> StageRunner:
    return lay.stages[k]


def _onnxruntime_backend(plan: StagePlan, lay: Layout, k: int,
                         cache_dir: str | os.PathLike | None = None,
                         threads: int | None = None) -> StageRunner:
    """Stage k as an ONNX Runtime session (tiercut.runtime.onnx_stage; exported once, cached
    on disk). Export covers every stage of the plan the first time, then loads from the cache."""
    try:
        from .onnx_stage import onnx_stages
    except ImportError as exc:
        raise BackendError(f"backend 'onnxruntime' is not available: {exc}") from None
    from .stageplan import example_inputs

    cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "tiercut", "onnx")
    return onnx_stages(lay.graph, list(lay.stages), cache, plan.model, example_inputs(plan),
                       threads)[k]


BACKENDS: dict[str, BackendFactory] = {"torch": _torch_backend,
                                       "onnxruntime": _onnxruntime_backend}


class BackendError(TiercutError, ValueError):
    """An unknown stage backend, or one that cannot build a stage."""


def register_backend(name: str, factory: BackendFactory) -> None:
    BACKENDS[name] = factory


# --- the server --------------------------------------------------------------------------------

@dataclass
class _Prepared:
    plan: StagePlan
    layout: Layout
    stage: int
    runner: StageRunner
    next_endpoint: str
    forward_codec: str
    next_alternates: tuple[str, ...] = ()
    inline: bool = False  # tiny enough to run on the event loop rather than hop to a worker
    where: str = ""  # "stage k on tier 'edge' (host:port)", for messages


class _Abort(Exception):
    """Carries a status code and message out to the RPC handler."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass
class _Stats:
    waiting: int = 0
    in_flight: int = 0
    service_s: float = 0.0
    served: int = 0
    shed: int = 0
    expired: int = 0


class TierServer(pb_grpc.TierServerServicer):
    """One tier: ``await start()``, ``await stop(grace)``; see ``ServerThread`` for sync use."""

    def __init__(self, models: Sequence[str], host: str = "127.0.0.1", port: int = 0,
                 threads: int | None = None, workers: int = 1,
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, backend: str = "torch",
                 tune_malloc: bool = True, max_plans: int = 32,
                 cache_dir: str | os.PathLike | None = None,
                 security: ServerSecurity | None = None,
                 forward_security: ClientSecurity | None = None, insecure_bind: bool = False,
                 max_in_flight: int = 64, max_per_client: int = 32):
        if not models:
            raise ValueError("a tier server needs at least one model to host (--models)")
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_in_flight < 1 or max_per_client < 1:
            raise ValueError(f"max_in_flight and max_per_client must be >= 1, got "
                             f"{max_in_flight}, {max_per_client}")
        check_bind(host, security, insecure_bind)
        self.security, self.forward_security = security, forward_security
        self.max_in_flight, self.max_per_client = max_in_flight, max_per_client
        self._per_client: dict[str, int] = {}
        self.models = tuple(models)
        self.host, self.port = host, port
        self.threads, self.workers = threads, workers
        self.limits, self.max_message_bytes, self.backend = limits, max_message_bytes, backend
        self.tune_malloc, self.max_plans = tune_malloc, max_plans
        self.cache_dir = cache_dir  # for backends that cache files (onnxruntime)
        self.endpoint = ""
        self._prepared: dict[tuple[str, int], _Prepared] = {}
        self._stats = _Stats()
        self._stats_lock = threading.Lock()
        self._server: grpc.aio.Server | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}  # to next tiers
        self._streams: dict[tuple[str, str], InferStream] = {}  # (next tier, client)
        self._drained: asyncio.Event | None = None
        self._serving = False
        self._prepare_lock: asyncio.Lock | None = None
        self._forward_metadata = security_metadata(forward_security)  # the next tier's token

    # lifecycle

    async def start(self) -> str:
        if self.tune_malloc:
            keep_freed_memory()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers,
                                                           thread_name_prefix="tiercut-stage")
        self._prepare_lock = asyncio.Lock()
        interceptors = self.security.interceptors() if self.security else []
        self._server = grpc.aio.server(options=channel_options(self.max_message_bytes),
                                       interceptors=interceptors)
        _add_servicer(self, self._server)
        address = f"{self.host}:{self.port}"
        try:
            if self.security is not None and self.security.tls:
                port = self._server.add_secure_port(address, self.security.credentials())
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError:  # grpc's way of saying the bind failed
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}: the address is in use or "
                          "not available here; pick another --port (0 picks a free one)")
        self.port = port
        self.endpoint = f"{self.host}:{port}"
        await self._server.start()
        self._serving = True
        return self.endpoint

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new requests, let those in flight finish (up to ``grace`` seconds), close.

        gRPC's own grace waits for calls to end, and an InferStream call lasts as long as its
        caller keeps it: so wait for the requests in flight to be answered (new ones are refused
        UNAVAILABLE meanwhile), then stop, which ends the streams; their callers open new ones
        elsewhere or finish locally."""
        self._serving = False
        if self._server is not None:
            if self._stats.in_flight:
                self._drained = asyncio.Event()
                try:
                    await asyncio.wait_for(self._drained.wait(), grace)
                except asyncio.TimeoutError:
                    pass  # the grace ran out: what is still running is cancelled
            # every request is answered: end the calls that are left, the streams among them
            await self._server.stop(0)
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def load(self) -> wire.Load:
        s = self._stats
        return wire.Load(s.waiting, s.in_flight, s.service_s, s.served, self.max_in_flight,
                         s.shed, s.expired)

    # RPCs

    async def Health(self, request: pb.HealthRequest, context: Any) -> pb.HealthReply:
        status = pb.HealthReply.SERVING if self._serving else pb.HealthReply.NOT_SERVING
        return pb.HealthReply(status=status, models=list(self.models),
                              load=wire.load_to_pb(self.load()))

    async def Load(self, request: pb.LoadRequest, context: Any) -> pb.LoadReply:
        return pb.LoadReply(load=wire.load_to_pb(self.load()))

    async def Probe(self, request: pb.ProbeRequest, context: Any) -> pb.ProbeReply:
        return pb.ProbeReply(received=len(request.padding), load=wire.load_to_pb(self.load()))

    async def Prepare(self, request: pb.PrepareRequest, context: Any) -> pb.PrepareReply:
        try:
            prepared = await self._prepare(request)
        except _Abort as exc:
            await context.abort(exc.code, exc.message)
        return pb.PrepareReply(plan_id=prepared.plan.plan_id, model=prepared.plan.model,
                               stage=prepared.stage, tier=prepared.plan.tiers[prepared.stage],
                               load=wire.load_to_pb(self.load()))

    async def Infer(self, request: pb.InferRequest, context: Any) -> pb.InferReply:
        client = _client_id(context)
        refused = self._admit(client)
        if refused is not None:
            code, why, load = refused
            context.set_trailing_metadata(((wire.LOAD_TRAILER, wire.load_to_text(load)),))
            await context.abort(code, why)
        try:
            remaining = context.time_remaining()
            deadline = None if remaining is None else time.monotonic() + remaining
            return await self._infer(request, deadline, client)
        except _Abort as exc:
            await context.abort(exc.code, exc.message)
        finally:
            self._release(client)

    async def InferStream(self, requests: Any, context: Any) -> None:
        """Infer for every request on the stream, answered in completion order (stream.py).

        Each request is admitted (or refused) as it is read, so load shedding counts it at
        once; a stage that runs in microseconds on the event loop and forwards nowhere is
        answered right there, anything else in its own task, so later requests on the stream
        need not wait for it."""
        client = _client_id(context)
        write_lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()

        async def send(answer: pb.InferStreamReply) -> None:
            async with write_lock:
                await context.write(answer)

        async def answer(request: pb.InferRequest) -> None:
            try:
                reply = await self._stream_answer(request, client)
            finally:
                self._release(client)
            await send(reply)

        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                if isinstance(request, _Undecodable):  # its id is unknown: ends the stream
                    await send(pb.InferStreamReply(code=_code(grpc.StatusCode.INVALID_ARGUMENT),
                                                   message=request.message))
                    break
                refused = self._admit(client)
                if refused is not None:
                    code, why, load = refused
                    await send(pb.InferStreamReply(request_id=request.request_id, code=_code(code),
                                                   message=why, load=wire.load_to_pb(load)))
                    continue
                p = self._prepared.get((request.plan_id, request.stage))
                if p is not None and p.inline and not p.next_endpoint:
                    await answer(request)
                else:
                    task = asyncio.get_running_loop().create_task(answer(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:  # the caller is done sending: answer what it sent
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:  # the call was cancelled (caller gone, server stopping)
                task.cancel()

    async def _stream_answer(self, request: pb.InferRequest,
                             client: str) -> pb.InferStreamReply:
        rid = request.request_id
        timeout = request.timeout_s
        if not (timeout >= 0 and math.isfinite(timeout)):
            return pb.InferStreamReply(request_id=rid, code=_code(grpc.StatusCode.INVALID_ARGUMENT),
                                       message=f"timeout_s {timeout!r} is not a number of "
                                               "seconds >= 0 (0: no bound)")
        deadline = time.monotonic() + timeout if timeout else None
        try:
            answer = pb.InferStreamReply(request_id=rid)
            await self._infer(request, deadline, client, answer.reply)  # in place: no copy
            return answer
        except _Abort as exc:
            return pb.InferStreamReply(request_id=rid, code=_code(exc.code), message=exc.message)
        except Exception as exc:  # a bug must not end every other request's stream
            return pb.InferStreamReply(request_id=rid, code=_code(grpc.StatusCode.INTERNAL),
                                       message=f"{type(exc).__name__}: {exc}")

    def _admit(self, client: str) -> tuple[grpc.StatusCode, str, wire.Load] | None:
        """Count a request in, or say why it is refused (status, message, load): over a bound,
        or the server is stopping. Runs on the event loop with no awaits, before anything is
        decoded."""
        stats = self._stats
        if not self._serving:
            return (grpc.StatusCode.UNAVAILABLE, f"{self.endpoint} is shutting down; finish "
                    "locally or try another host", self.load())
        held = self._per_client.get(client, 0)
        if stats.in_flight >= self.max_in_flight or held >= self.max_per_client:
            stats.shed += 1
            load = self.load()
            why = (f"{stats.in_flight} requests in flight, the most it takes is "
                   f"{self.max_in_flight}" if stats.in_flight >= self.max_in_flight else
                   f"client {client[:64]!r} has {held} requests in flight, the most one "
                   f"client may have is {self.max_per_client}")
            return (grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self.endpoint} is overloaded: {why}; "
                    f"finish locally or try another host (load: {wire.load_to_text(load)})",
                    load)
        stats.in_flight += 1
        self._per_client[client] = held + 1
        return None

    def _release(self, client: str) -> None:
        self._stats.in_flight -= 1
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]
        if not self._stats.in_flight and self._drained is not None:
            self._drained.set()

    # the work

    async def _prepare(self, request: pb.PrepareRequest) -> _Prepared:
        bad = grpc.StatusCode.INVALID_ARGUMENT
        try:
            plan = StagePlan.from_json(request.plan_json)
        except PlanError as exc:
            raise _Abort(bad, f"Prepare: {exc}") from None
        if plan.model not in self.models:
            raise _Abort(grpc.StatusCode.NOT_FOUND,
                         f"Prepare: model {plan.model!r} is not hosted here; this server hosts "
                         f"{list(self.models)}")
        if not 0 <= request.stage < plan.stages:
            raise _Abort(bad, f"Prepare: stage {request.stage} is out of range; the plan has "
                              f"stages 0..{plan.stages - 1} for tiers {list(plan.tiers)}")
        codec = request.forward_codec or "raw"
        _check_codec(codec, "Prepare: forward_codec")
        nxt = request.next_endpoint
        if nxt and not _ENDPOINT.match(nxt):
            raise _Abort(bad, f"Prepare: next_endpoint {nxt!r} is not host:port")
        alternates = tuple(request.next_alternates)
        if len(alternates) > 16:
            raise _Abort(bad, f"Prepare: {len(alternates)} next_alternates; at most 16")
        for alt in alternates:
            if not _ENDPOINT.match(alt):
                raise _Abort(bad, f"Prepare: next_alternates entry {alt[:80]!r} is not "
                                  "host:port")
        if alternates and not nxt:
            raise _Abort(bad, "Prepare: next_alternates without a next_endpoint")
        if not nxt and request.stage < plan.stages - 1:
            raise _Abort(bad, f"Prepare: stage {request.stage} is not the last of "
                              f"{plan.stages} stages, so next_endpoint must name the next tier")
        try:
            elements = await asyncio.to_thread(input_elements, plan)
        except UnknownModelError as exc:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Prepare: {exc}") from None
        if elements > self.limits.max_elements:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"Prepare: the plan's inputs hold {elements} elements, over this "
                         f"server's limit of {self.limits.max_elements}")
        async with self._prepare_lock:
            try:
                lay = await asyncio.to_thread(layout, plan)
                runner = await asyncio.to_thread(self._runner, plan, lay, request.stage)
            except UnknownModelError as exc:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"Prepare: {exc}") from None
            except TiercutError as exc:
                raise _Abort(bad, f"Prepare: cannot build stage {request.stage} of "
                                  f"{plan.model}: {exc}") from None
            except Exception as exc:
                raise _Abort(grpc.StatusCode.INTERNAL,
                             f"Prepare: building {plan.model} failed: "
                             f"{type(exc).__name__}: {exc}") from None
            prepared = _Prepared(plan, lay, request.stage, runner, nxt, codec, alternates,
                                 self.backend == "torch" and _tiny(lay, request.stage),
                                 f"stage {request.stage} on tier "
                                 f"{plan.tiers[request.stage]!r} ({self.endpoint})")
            self._prepared.pop((plan.plan_id, request.stage), None)
            self._prepared[(plan.plan_id, request.stage)] = prepared
            while len(self._prepared) > self.max_plans:  # the least recently prepared goes
                del self._prepared[next(iter(self._prepared))]
        return prepared

    def _runner(self, plan: StagePlan, lay: Layout, k: int) -> StageRunner:
        if self.backend == "onnxruntime":
            return _onnxruntime_backend(plan, lay, k, self.cache_dir, self.threads)
        return BACKENDS[self.backend](plan, lay, k)

    def _lookup(self, plan_id: str, stage: int) -> _Prepared:
        if stage:
            found = self._prepared.get((plan_id, stage))
        else:
            found = [p for (pid, _), p in self._prepared.items() if pid == plan_id]
            found = found[0] if len(found) == 1 else None
        if found is None:
            known = sorted({pid[:12] for pid, _ in self._prepared})
            raise _Abort(grpc.StatusCode.NOT_FOUND,
                         f"unknown plan id {plan_id[:64]!r} (stage {stage}); send Prepare "
                         f"first (plans prepared here: {known})")
        return found

    async def _infer(self, request: pb.InferRequest, deadline: float | None = None,
                     client: str = "", reply: pb.InferReply | None = None) -> pb.InferReply:
        """Run this server's stage for ``request`` (forwarding what later tiers need) and build
        the reply (in ``reply`` when given); ``deadline`` is time.monotonic() by which the
        caller gives up."""
        t0 = time.perf_counter()
        p = self._lookup(request.plan_id, request.stage)
        k, tier = p.stage, p.plan.tiers[p.stage]
        where = p.where
        reply_codec = request.reply_codec or "raw"
        _check_codec(reply_codec, "reply_codec")
        try:
            values, bytes_in = wire.decode_values(request.values, self.limits)
            wire.check_values(values, p.layout.receives[k], p.layout.signatures, where)
        except wire.LimitError as exc:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{where}: {exc}") from None
        except wire.WireError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        t_decoded = time.perf_counter()
        produced, queue_s, compute_s = await self._compute(p, values, where, deadline)
        forward_s = encode_s = 0.0
        bytes_forwarded = 0
        downstream: pb.InferReply | None = None
        if p.next_endpoint:
            t = time.perf_counter()
            env = {**values, **produced}
            # values received and forwarded unchanged keep their frames when the codec agrees
            passed = {nv.name: nv for nv in request.values} \
                if (request.codec or "raw") == p.forward_codec else {}
            forward = pb.InferRequest(plan_id=p.plan.plan_id, stage=k + 1,
                                      request_id=request.request_id, reply_codec=reply_codec,
                                      codec=p.forward_codec)
            for v in p.layout.forwards(k):
                if v in passed:
                    forward.values.append(passed[v])
                    bytes_forwarded += wire.frame_bytes((passed[v],))
                else:
                    bytes_forwarded += self._encode({v: env[v]}, p.forward_codec,
                                                    forward.values, where)
            encode_s += time.perf_counter() - t
            t = time.perf_counter()
            downstream = await self._forward(p, forward, deadline, where, client)
            forward_s = time.perf_counter() - t
        t = time.perf_counter()
        if reply is None:
            reply = pb.InferReply()
        reply.request_id = request.request_id
        bytes_out = self._encode({v: produced[v] for v in p.layout.returns[k]}, reply_codec,
                                 reply.outputs, where)
        encode_s += time.perf_counter() - t
        if downstream is not None:
            reply.outputs.extend(downstream.outputs)
            bytes_out += wire.frame_bytes(downstream.outputs)
        with self._stats_lock:
            self._stats.served += 1
        timing = reply.timings.add(  # written into the reply, no copy on the way
            server=self.endpoint, tier=tier, stage=k, queue_s=queue_s, compute_s=compute_s,
            decode_s=t_decoded - t0, encode_s=encode_s, forward_s=forward_s,
            bytes_in=bytes_in, bytes_forwarded=bytes_forwarded, bytes_out=bytes_out)
        timing.load.CopyFrom(wire.load_to_pb(self.load()))
        timing.total_s = time.perf_counter() - t0
        if downstream is not None:
            reply.timings.extend(downstream.timings)
        reply.load.CopyFrom(timing.load)
        return reply

    @staticmethod
    def _encode(values: dict[str, Any], codec: str, out: Any, where: str) -> int:
        try:
            return wire.encode_values(values, codec, out)[1]
        except wire.WireError as exc:
            raise _Abort(grpc.StatusCode.INTERNAL, f"{where}: {exc}") from None

    async def _compute(self, p: _Prepared, values: dict[str, Any], where: str,
                       deadline: float | None = None) -> tuple[dict[str, Any], float, float]:
        stats, lock = self._stats, self._stats_lock
        if p.inline:  # microseconds on the event loop: no queue, no worker thread
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    produced = p.runner.run(values)
            except Exception as exc:
                raise _Abort(grpc.StatusCode.INTERNAL,
                             f"while executing {where}: {type(exc).__name__}: {exc}") from None
            compute_s = time.perf_counter() - started
            self._record_service(compute_s)
            return produced, 0.0, compute_s
        with lock:
            stats.waiting += 1
        queued = time.perf_counter()
        state: dict[str, Any] = {"started": None, "dropped": False}

        def work() -> dict[str, Any] | None:
            with lock:
                if state["dropped"]:  # the caller went away while this waited
                    return None
                stats.waiting -= 1
                if deadline is not None and time.monotonic() >= deadline:
                    state["dropped"] = True  # its deadline passed in the queue: do not run it
                    stats.expired += 1
                    return None
                state["started"] = time.perf_counter()
            with torch.inference_mode():
                return p.runner.run(values)

        def unqueue() -> None:
            with lock:
                if state["started"] is None and not state["dropped"]:
                    state["dropped"] = True
                    stats.waiting -= 1

        loop = asyncio.get_running_loop()
        try:
            produced = await loop.run_in_executor(self._pool, work)
        except asyncio.CancelledError:
            unqueue()
            raise
        except Exception as exc:
            unqueue()
            raise _Abort(grpc.StatusCode.INTERNAL,
                         f"while executing {where}: {type(exc).__name__}: {exc}") from None
        if state["started"] is None:
            raise _Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                         f"{where}: the request's deadline passed while it waited for a "
                         "worker; dropped without running it")
        compute_s = time.perf_counter() - state["started"]
        self._record_service(compute_s)
        return produced, state["started"] - queued, compute_s

    def _record_service(self, compute_s: float) -> None:
        """Fold one stage run into the service-time EWMA (the first run sets it)."""
        stats = self._stats
        with self._stats_lock:
            stats.service_s = compute_s if stats.served == 0 and stats.service_s == 0 else (
                (1 - _EWMA) * stats.service_s + _EWMA * compute_s)

    def _stream(self, endpoint: str, client: str) -> InferStream:
        """The stream to ``endpoint`` that carries ``client``'s requests: one per client, so
        the next tier bounds requests per client as this one does (the id travels in the
        stream's metadata). The least recently used go beyond MAX_FORWARD_STREAMS."""
        key = (endpoint, client)
        found = self._streams.pop(key, None)
        if found is None:
            if endpoint not in self._channels:
                self._channels[endpoint] = open_channel(endpoint, self.forward_security,
                                                        channel_options(self.max_message_bytes))
            metadata = self._forward_metadata + (((CLIENT_ID_HEADER, client[3:]),)
                                                 if client.startswith("id:") else ())
            found = InferStream(self._channels[endpoint], metadata)
            while len(self._streams) >= MAX_FORWARD_STREAMS:
                self._streams.pop(next(iter(self._streams))).close()
        self._streams[key] = found
        return found

    async def _forward(self, p: _Prepared, request: pb.InferRequest, deadline: float | None,
                       where: str, client: str = "") -> pb.InferReply:
        """To the next tier's host, or on to its alternates when one is down or overloaded."""
        hosts = (p.next_endpoint, *p.next_alternates)
        for i, endpoint in enumerate(hosts):
            timeout = None if deadline is None else deadline - time.monotonic()
            try:
                return await self._stream(endpoint, client).infer(request, timeout)
            except CallFailed as exc:
                code = exc.code
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED) \
                        and i + 1 < len(hosts):
                    continue  # another host of the same tier may take it
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise _Abort(code, f"{where}: next tier {endpoint} is unreachable "
                                       f"({code.name}): {exc.details}") from None
                raise _Abort(code, f"{where}: next tier {endpoint} answered {code.name}: "
                                   f"{exc.details}") from None
        raise AssertionError("unreachable")


MAX_FORWARD_STREAMS = 256
INLINE_FLOPS, INLINE_BYTES = 100_000, 64 << 10


class _Undecodable:
    """What a request that is not valid protobuf becomes: answered INVALID_ARGUMENT."""

    def __init__(self, kind: str, error: Exception):
        self.message = f"request is not a valid {kind}: {error}"


def _add_servicer(servicer: "TierServer", server: grpc.aio.Server) -> None:
    """As the generated add_TierServerServicer_to_server, but a request gRPC cannot parse is
    answered INVALID_ARGUMENT by us rather than UNKNOWN with a traceback in the log (a flood
    of garbage must not flood the log)."""
    from google.protobuf.message import DecodeError

    def handler(method: Callable, request_type: Any, reply_type: Any) -> Any:
        def deserialize(data: bytes) -> Any:
            try:
                return request_type.FromString(data)
            except (DecodeError, RuntimeError, ValueError) as exc:
                return _Undecodable(request_type.DESCRIPTOR.name, exc)

        async def call(request: Any, context: Any) -> Any:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await method(request, context)

        return grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=deserialize,
            response_serializer=reply_type.SerializeToString)

    def stream_deserialize(data: bytes) -> Any:
        try:
            return pb.InferRequest.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return _Undecodable("InferRequest", exc)

    handlers = {"Prepare": handler(servicer.Prepare, pb.PrepareRequest, pb.PrepareReply),
                "Infer": handler(servicer.Infer, pb.InferRequest, pb.InferReply),
                "InferStream": grpc.stream_stream_rpc_method_handler(
                    servicer.InferStream, request_deserializer=stream_deserialize,
                    response_serializer=pb.InferStreamReply.SerializeToString),
                "Health": handler(servicer.Health, pb.HealthRequest, pb.HealthReply),
                "Load": handler(servicer.Load, pb.LoadRequest, pb.LoadReply),
                "Probe": handler(servicer.Probe, pb.ProbeRequest, pb.ProbeReply)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tiercut.runtime.TierServer", handlers),))


def _client_id(context: Any) -> str:
    """The ``tiercut-client-id`` metadata, else the peer's address without its port."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ID_HEADER:
            text = value if isinstance(value, str) else value.decode("latin-1")
            return "id:" + text[:64]
    peer = context.peer() or ""
    return "peer:" + (peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer)[:80]


def _code(status: grpc.StatusCode) -> int:
    return status.value[0]


def _tiny(lay: Layout, k: int) -> bool:
    """A stage of a few microseconds (slices, views, a small head): a worker thread's hop
    (~0.1 ms) would cost more than running it on the event loop."""
    nodes = [lay.graph.nodes[n] for n in lay.stages[k].nodes]
    return (sum(n.flops for n in nodes) <= INLINE_FLOPS
            and sum(n.output_bytes for n in nodes) <= INLINE_BYTES)


def _check_codec(name: str, label: str) -> None:
    try:
        codecs.parse_codec(name)
    except codecs.CodecError as exc:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{label}: {exc}") from None


# --- running a server in the background (tests, benchmarks) -----------------------------------

class ServerThread:
    """A TierServer on its own event loop in a daemon thread: ``.endpoint``, ``.stop(grace)``."""

    def __init__(self, server: TierServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"tiercut-server-{id(self):x}")
        self._thread.start()
        self.endpoint = self._call(server.start())

    def _call(self, coro: Any, timeout: float | None = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float | None = 5.0) -> None:
        if not self._loop.is_running():
            return
        self._call(self.server.stop(grace), timeout=None if grace is None else grace + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(0)


def serve_in_thread(models: Sequence[str], **kwargs: Any) -> ServerThread:
    return ServerThread(TierServer(models, **kwargs))


@dataclass
class ServerProcess:
    """``tiercut serve`` in a child process (``python -m tiercut.cli_runtime serve``)."""

    process: subprocess.Popen
    endpoint: str
    log: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the server drains its requests in flight and exits."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def spawn(models: Sequence[str], threads: int | None = 1, host: str = "127.0.0.1",
          extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
          timeout: float = 60, cpus: Sequence[int] | None = None) -> ServerProcess:
    """Start a tier server in a child process on a free port; wait until it listens.
    ``cpus``: the CPUs it runs on (``serve --cpus``)."""
    cmd = [sys.executable, "-m", "tiercut.cli_runtime", "serve", "--host", host, "--port", "0",
           "--models", ",".join(models), *extra_args]
    if threads:
        cmd += ["--threads", str(threads)]
    if cpus is not None:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    log: list[str] = []
    deadline = time.monotonic() + timeout
    endpoint = ""

    def read() -> None:
        nonlocal endpoint
        for line in proc.stdout:  # type: ignore[union-attr]
            log.append(line.rstrip())
            found = re.search(r"listening on (\S+:\d+)", line)
            if found and not endpoint:
                endpoint = found.group(1)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not endpoint:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tier server did not start: {' | '.join(log[-20:])}")
        time.sleep(0.02)
    return ServerProcess(proc, endpoint, log)


# --- `tiercut serve` ---------------------------------------------------------------------------

def serve_forever(server: TierServer, on_start: Callable[[str], None] = print) -> None:
    """Run ``server`` until SIGTERM or SIGINT, then drain requests in flight and exit."""

    async def main() -> None:
        endpoint = await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        on_start(endpoint)
        await stop.wait()
        await server.stop(grace=30)

    asyncio.run(main())
