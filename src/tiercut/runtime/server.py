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
``RunPart`` computes one part of a layer range divided across servers (parts.py; the device
side is fanout.py), admitted and bounded like ``Infer``.

Errors map to gRPC status codes (NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE,
INTERNAL) with a message naming the value, plan or endpoint; the server keeps serving.

Hostile clients and overload (docs: security.py for TLS and the token):
- every message is at most ``max_message_bytes`` (gRPC refuses bigger ones before decoding);
  every tensor frame is checked against ``limits`` (elements, bytes, ndim) before allocation.
- ``max_in_flight`` bounds the Infer requests being handled at once (decoding, queued for a
  worker, computing or forwarding): one more is answered RESOURCE_EXHAUSTED at once, with the
  server's load in the message and in the ``tiercut-load`` trailer (on a stream, in the
  answer's ``load``), so the client can finish locally or re-plan. The queue for compute
  workers is therefore at most ``max_in_flight - workers`` long.
- ``max_per_client`` bounds the requests of one client in flight. A client is named by its
  ``tiercut-client-id`` metadata (SplitClient sends one per instance; a forwarding tier passes
  on its caller's), or else by its peer address without the port. The id is not
  authenticated: it shares capacity fairly among cooperating clients; ``max_in_flight`` is
  what protects the server.
- a request whose deadline passes while it waits for a worker is dropped unrun
  (DEADLINE_EXCEEDED, counted in ``Load.expired``); on a stream the deadline is the request's
  ``timeout_s``, and a cancel (``InferRequest.cancel``) drops one of its requests that has not
  started (CANCELLED, ``Load.cancelled``); one computing finishes and is answered as usual.

This module holds the handlers; the rest of a server lives beside it: stagecache.py (Prepare's
checks and the prepared stages), backends.py (what runs a stage), admission.py (the bounds and
the load), workers.py (the worker pool), forward.py (on to the next tier), dispatch.py (the RPC
table), parts.py (RunPart's checks and work), launch.py (running a server in a thread, a child
process, or until SIGTERM).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import time
from typing import Any, Callable, Iterable, Sequence

import grpc
import torch

from .. import codecs
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .admission import Admission, client_id
from .backends import BACKENDS, BackendError
from .dispatch import Undecodable, add_servicer
from .forward import Forwarder
from .parts import PartRunner
from .peerprobe import PeerProber
from .security import ClientSecurity, ServerSecurity, check_bind
from .divided import divided_stage
from .stagecache import Prepared, StageCache
from .status import Abort, check_codec, code_number
from .transport import MAX_MESSAGE_BYTES, channel_options, keep_freed_memory
from .workers import Ticket, Tickets, compute


class TierServer(pb_grpc.TierServerServicer):
    """One tier: ``await start()``, ``await stop(grace)``; launch.ServerThread for sync use."""

    def __init__(self, models: Sequence[str], host: str = "127.0.0.1", port: int = 0,
                 threads: int | None = None, workers: int = 1,
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, backend: str = "torch",
                 tune_malloc: bool = True, max_plans: int = 32,
                 cache_dir: str | os.PathLike | None = None,
                 security: ServerSecurity | None = None,
                 forward_security: ClientSecurity | None = None, insecure_bind: bool = False,
                 max_in_flight: int = 64, max_per_client: int = 32,
                 peers: Sequence[str] = (),
                 known_peers: Callable[[], Iterable[str]] | None = None):
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
        self.models = tuple(models)
        self.host, self.port = host, port
        self.threads, self.workers = threads, workers
        self.limits, self.max_message_bytes, self.backend = limits, max_message_bytes, backend
        self.tune_malloc, self.max_plans = tune_malloc, max_plans
        self.cache_dir = cache_dir  # for backends that cache files (onnxruntime)
        self.endpoint = ""
        self._stages = StageCache(self.models, limits, backend, max_plans, cache_dir, threads,
                                  peers, divided_stage)
        self._admission = Admission(max_in_flight, max_per_client)
        self._next = Forwarder(forward_security, max_message_bytes)
        self._parts = PartRunner(self.models, limits)
        # ProbePeer dials --peers and nodes discovered on the LAN (known_peers), nothing else
        self._peer_prober = PeerProber(peers, known_peers, forward_security)
        self._server: grpc.aio.Server | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._serving = False

    # lifecycle

    async def start(self) -> str:
        if self.tune_malloc:
            keep_freed_memory()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.workers,
                                                           thread_name_prefix="tiercut-stage")
        interceptors = self.security.interceptors() if self.security else []
        self._server = grpc.aio.server(options=channel_options(self.max_message_bytes),
                                       interceptors=interceptors)
        add_servicer(self, self._server)
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
            await self._admission.drain(grace)
            # every request is answered: end the calls that are left, the streams among them
            await self._server.stop(0)
        await self._next.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    def load(self) -> wire.Load:
        return self._admission.load()

    # RPCs

    async def Health(self, request: pb.HealthRequest, context: Any) -> pb.HealthReply:
        status = pb.HealthReply.SERVING if self._serving else pb.HealthReply.NOT_SERVING
        return pb.HealthReply(status=status, models=list(self.models),
                              load=wire.load_to_pb(self.load()))

    async def Load(self, request: pb.LoadRequest, context: Any) -> pb.LoadReply:
        return pb.LoadReply(load=wire.load_to_pb(self.load()))

    async def Probe(self, request: pb.ProbeRequest, context: Any) -> pb.ProbeReply:
        return pb.ProbeReply(received=len(request.padding), load=wire.load_to_pb(self.load()))

    async def ProbePeer(self, request: pb.ProbePeerRequest, context: Any) -> pb.ProbePeerReply:
        try:
            return await self._peer_prober.probe(request, self.endpoint, self.max_message_bytes)
        except Abort as exc:
            await context.abort(exc.code, exc.message)

    async def Prepare(self, request: pb.PrepareRequest, context: Any) -> pb.PrepareReply:
        try:
            prepared = await self._stages.prepare(request, self.endpoint)
        except Abort as exc:
            await context.abort(exc.code, exc.message)
        return pb.PrepareReply(plan_id=prepared.plan.plan_id, model=prepared.plan.model,
                               stage=prepared.stage, tier=prepared.plan.tiers[prepared.stage],
                               load=wire.load_to_pb(self.load()))

    async def Infer(self, request: pb.InferRequest, context: Any) -> pb.InferReply:
        return await self._admitted(context, lambda deadline, client: self._infer(
            request, deadline, client))

    async def RunPart(self, request: pb.RunPartRequest, context: Any) -> pb.RunPartReply:
        """One part of a divided layer range (parts.py)."""
        return await self._admitted(context, lambda deadline, client: self._parts.run(
            request, self.endpoint, deadline, self._pool, self._admission))

    async def _admitted(self, context: Any, work: Any) -> Any:
        """``await work(deadline, client)`` for a unary call once it is admitted, its Abort
        answered as the call's status; a refused call is answered with the load."""
        client = client_id(context)
        refused = self._admit(client)
        if refused is not None:
            code, why, load = refused
            context.set_trailing_metadata(((wire.LOAD_TRAILER, wire.load_to_text(load)),))
            await context.abort(code, why)
        try:
            remaining = context.time_remaining()
            deadline = None if remaining is None else time.monotonic() + remaining
            return await work(deadline, client)
        except Abort as exc:
            await context.abort(exc.code, exc.message)
        finally:
            self._admission.release(client)

    async def InferStream(self, requests: Any, context: Any) -> None:
        """Infer for every request on the stream, answered in completion order (stream.py).

        Each request is admitted (or refused) as it is read, so load shedding counts it at
        once; a stage that runs in microseconds on the event loop and forwards nowhere is
        answered right there, anything else in its own task, so later requests on the stream
        need not wait for it. A cancel is no request: it drops one still waiting (workers.py)."""
        client = client_id(context)
        write_lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()
        waiting = Tickets(self._admission)  # the requests not yet answered, for cancels

        async def send(answer: pb.InferStreamReply) -> None:
            async with write_lock:
                await context.write(answer)

        async def answer(request: pb.InferRequest, ticket: Ticket) -> None:
            try:
                reply = await self._stream_answer(request, client, ticket)
            finally:
                self._admission.release(client)
                waiting.done(request.request_id, ticket)
            await send(reply)

        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                if isinstance(request, Undecodable):  # its id is unknown: ends the stream
                    await send(pb.InferStreamReply(code=code_number(
                        grpc.StatusCode.INVALID_ARGUMENT), message=request.message))
                    break
                if request.cancel:  # of an earlier request; not one itself: no answer
                    waiting.cancel(request.request_id)  # an unknown id: ignored
                    continue
                refused = self._admit(client)
                if refused is not None:
                    code, why, load = refused
                    await send(pb.InferStreamReply(request_id=request.request_id,
                                                   code=code_number(code), message=why,
                                                   load=wire.load_to_pb(load)))
                    continue
                ticket = waiting.add(request.request_id)
                p = self._stages.prepared.get((request.plan_id, request.stage))
                if p is not None and p.inline and not p.next_endpoint:
                    await answer(request, ticket)
                else:
                    task = asyncio.get_running_loop().create_task(answer(request, ticket))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if tasks:  # the caller is done sending: answer what it sent
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:  # the call was cancelled (caller gone, server stopping)
                task.cancel()

    async def _stream_answer(self, request: pb.InferRequest, client: str,
                             ticket: Ticket | None = None) -> pb.InferStreamReply:
        rid, timeout = request.request_id, request.timeout_s
        try:
            if not (timeout >= 0 and math.isfinite(timeout)):
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"timeout_s {timeout!r} is not a "
                            "number of seconds >= 0 (0: no bound)")
            deadline = time.monotonic() + timeout if timeout else None
            answer = pb.InferStreamReply(request_id=rid)
            await self._infer(request, deadline, client, answer.reply, ticket)  # in place
            return answer
        except Abort as exc:
            return pb.InferStreamReply(request_id=rid, code=code_number(exc.code),
                                       message=exc.message)
        except Exception as exc:  # a bug must not end every other request's stream
            return pb.InferStreamReply(request_id=rid,
                                       code=code_number(grpc.StatusCode.INTERNAL),
                                       message=f"{type(exc).__name__}: {exc}")

    def _admit(self, client: str) -> tuple[grpc.StatusCode, str, wire.Load] | None:
        """Count a request in, or say why it is refused (status, message, load): over a bound,
        or the server is stopping. Runs on the event loop with no awaits, before anything is
        decoded."""
        if not self._serving:
            return (grpc.StatusCode.UNAVAILABLE, f"{self.endpoint} is shutting down; finish "
                    "locally or try another host", self.load())
        return self._admission.admit(client, self.endpoint)

    # the work

    async def _infer(self, request: pb.InferRequest, deadline: float | None = None,
                     client: str = "", reply: pb.InferReply | None = None,
                     ticket: Ticket | None = None) -> pb.InferReply:
        """Run this server's stage for ``request`` (forwarding what later tiers need) and build
        the reply (in ``reply`` when given); ``deadline`` is time.monotonic() by which the
        caller gives up; ``ticket`` lets a stream's cancel drop it until the stage starts."""
        t0 = time.perf_counter()
        if request.cancel:  # InferStream reads its cancels itself; a unary call is cancelled
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "cancel is for InferStream only")
        p = self._stages.lookup(request.plan_id, request.stage)
        k, tier = p.stage, p.plan.tiers[p.stage]
        where = p.where
        reply_codec = request.reply_codec or "raw"
        check_codec(reply_codec, "reply_codec")
        try:
            values, bytes_in = wire.decode_values(request.values, self.limits)
            wire.check_values(values, p.layout.receives[k], p.layout.signatures, where)
        except wire.LimitError as exc:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{where}: {exc}") from None
        except wire.WireError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        t_decoded = time.perf_counter()
        produced, queue_s, compute_s = await self._compute(p, values, where, deadline, ticket)
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
            downstream = await self._next.forward(p, forward, deadline, where, client)
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
        self._admission.count_served()
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
            raise Abort(grpc.StatusCode.INTERNAL, f"{where}: {exc}") from None

    async def _compute(self, p: Prepared, values: dict[str, Any], where: str,
                       deadline: float | None = None, ticket: Ticket | None = None
                       ) -> tuple[dict[str, Any], float, float]:
        """Run prepared stage ``p`` on ``values`` (workers.py): (produced, queue s, compute s)."""
        return await compute(p, values, where, deadline, self._pool, self._admission, ticket)


from .._moved import forward as _forward  # noqa: E402  (names that left when server.py was split)

__getattr__ = _forward(__name__, {name: f"tiercut.runtime.{module}" for module, names in (
    ("backends", "StageRunner BackendFactory register_backend"),
    ("stagecache", "INLINE_FLOPS INLINE_BYTES"), ("forward", "MAX_FORWARD_STREAMS"),
    ("launch", "ServerThread serve_in_thread ServerProcess spawn serve_forever"))
    for name in names.split()})
