"""The device side of a divided layer range: one request's run fanned out to several tier
servers at once, the parts gathered and stitched.

``FanOut(endpoints, model, first, last)`` tiles the nodes ``first`` .. ``last`` of ``model``
(tiercut.decompose.SpatialRun, traced here as the servers trace it: parts.spatial_run).
``run(source, parts, assign)`` sends part i the run's source cropped to what it reads (halo
included) on ``RunPart`` (parts.py) to endpoint ``assign[i]``, every part at once (one thread
per part in flight, blocking gRPC calls), and stitches the replies into the run's output. A
part assigned ``LOCAL`` is computed here, beside the others (the coordinator's own share).

No part is lost: a part whose server fails (unreachable, an error status, a reply that is not
that part) or does not answer within ``deadline_s`` is recomputed on the next endpoint of the
fan-out that has not failed in this run, and here (``SpatialRun.run_part``) when none is left
(``fallback``; without it, FanOutError). An endpoint that failed is skipped for
``retry_after_s``, in this run and the next ones. The FanOutReport says per part where it ran,
its seconds on the server and on the wall, the bytes each way, and whether it was recomputed
and why.

Channels come from security.open_channel with the options client.py's use (transport.py,
hosts.py), every call sending security.metadata (token, client id).
"""
from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import grpc
import torch

from .. import codecs
from ..decompose import Part, SpatialRun
from ..decompose.spatial import Rect
from ..errors import TiercutError
from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from . import wire
from .hosts import RECONNECT  # reconnect soon after a server comes back
from .parts import output_signature, spatial_run
from .security import ClientSecurity, metadata, open_channel
from .stageplan import LOCAL_PEER, Signature
from .transport import MAX_MESSAGE_BYTES, channel_options

LOCAL = LOCAL_PEER  # PartReport.endpoint of a part computed in this process


class FanOutError(TiercutError, ValueError):
    """A fan-out that cannot run: bad endpoints, parts, assignment or source, or (without
    ``fallback``) a part that every endpoint failed."""


class _Failed(Exception):
    """One try of one part failed; the message says where and why."""


@dataclass(frozen=True)
class PartReport:
    """What one part of one run did."""

    index: int  # position in ``parts``
    out: Rect  # the rectangle of the run's output it computed
    assigned: str  # the endpoint ``assign`` gave it
    endpoint: str  # where it was computed in the end: a host:port, or LOCAL
    compute_s: float  # seconds computing it: as the server measured, or here when LOCAL
    wall_s: float  # from its first try to its output decoded here, every try included
    bytes_sent: int  # source frame bytes sent, every try counted
    bytes_received: int  # output frame bytes of the reply used (0 when LOCAL)
    recomputed: bool  # not computed on ``assigned``
    errors: tuple[str, ...] = ()  # why each endpoint tried before ``endpoint`` failed

    @property
    def local(self) -> bool:
        return self.endpoint == LOCAL


@dataclass(frozen=True)
class FanOutReport:
    """What one ``FanOut.run`` did: per part, in the order of ``parts``."""

    parts: tuple[PartReport, ...]
    wall_s: float  # from the call to the stitched output

    @property
    def recomputed(self) -> tuple[PartReport, ...]:
        return tuple(p for p in self.parts if p.recomputed)

    @property
    def bytes_sent(self) -> int:
        return sum(p.bytes_sent for p in self.parts)

    @property
    def bytes_received(self) -> int:
        return sum(p.bytes_received for p in self.parts)


class FanOut:
    """The nodes ``first`` .. ``last`` of ``model`` divided across ``endpoints`` (host:port).

    ``batch``: the example batch the run is traced with (None: the zoo's); ``codec`` for the
    source crops sent, ``reply_codec`` for the parts coming back (raw: bit-exact);
    ``deadline_s`` bounds one try of one part (None: no bound); ``max_parallel`` parts are in
    flight at once. Use as a context manager, or ``close()``."""

    def __init__(self, endpoints: Sequence[str], model: str, first: str, last: str, *,
                 batch: int | None = None, codec: str = "raw", reply_codec: str = "raw",
                 deadline_s: float | None = 30.0, retry_after_s: float = 1.0,
                 fallback: bool = True, security: ClientSecurity | None = None,
                 client_id: str | None = None,
                 limits: codecs.Limits = codecs.DEFAULT_LIMITS,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_parallel: int = 16):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints = tuple(endpoints)
        bad = [e for e in self.endpoints if not isinstance(e, str) or ":" not in e]
        if not self.endpoints or bad:
            raise FanOutError(f"give the fan-out's endpoints as host:port strings, got "
                              f"{list(self.endpoints)}")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise FanOutError(f"endpoints {list(self.endpoints)} name a host twice")
        for name in (codec, reply_codec):
            codecs.parse_codec(name)  # CodecError names a bad one now, not per part
        if deadline_s is not None and not deadline_s > 0:
            raise FanOutError(f"deadline_s must be > 0 seconds (or None), got {deadline_s!r}")
        if max_parallel < 1:
            raise FanOutError(f"max_parallel must be >= 1, got {max_parallel}")
        self.model, self.batch = model, batch
        self.spatial: SpatialRun = spatial_run(model, first, last, batch)  # DecomposeError
        self.first, self.last = first, last
        self.codec, self.reply_codec = codec, reply_codec
        self.deadline_s, self.retry_after_s, self.fallback = deadline_s, retry_after_s, fallback
        self.security, self.limits, self.max_message_bytes = security, limits, max_message_bytes
        self._metadata = metadata(security, client_id or uuid.uuid4().hex[:16])
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:16] + "-"
        self._pool = concurrent.futures.ThreadPoolExecutor(max_parallel,
                                                           thread_name_prefix="tiercut-fanout")
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, pb_grpc.TierServerStub]] = {}
        self._down: dict[str, float] = {}  # host -> time.monotonic() until which it is skipped

    # --- the run ----------------------------------------------------------------------------

    def run(self, source: torch.Tensor, parts: Sequence[Part],
            assign: Sequence[str | int] | None = None) -> tuple[torch.Tensor, FanOutReport]:
        """The run's output for ``source`` (the run's whole source tensor), part i computed on
        ``assign[i]`` (an endpoint or its index in ``endpoints``; None: round robin), and what
        each part did."""
        t0 = time.perf_counter()
        parts = list(parts)
        hosts = self._check(source, parts, assign)
        futures = [self._pool.submit(self._part, i, p, h, source)
                   for i, (p, h) in enumerate(zip(parts, hosts))]
        done = [f.result() for f in futures]
        n, c, h, w = self.spatial.out_shape
        out = done[0][0].new_empty((n, c, h, w))
        for p, (y, _) in zip(parts, done):
            (r0, r1), (c0, c1) = p.out
            out[:, :, r0:r1, c0:c1] = y
        return out, FanOutReport(tuple(r for _, r in done), time.perf_counter() - t0)

    def _check(self, source: torch.Tensor, parts: list[Part],
               assign: Sequence[str | int] | None) -> list[str]:
        """The endpoint of every part; FanOutError unless the run can go as asked."""
        run = self.spatial
        want = Signature("tensor", tuple(run.shape[run.source]),
                              run.graph[run.source].outputs[0].dtype)
        got = wire.signature_or_none(source)
        if got != want:
            raise FanOutError(f"the source of {self.first}..{self.last} is {run.source!r}, "
                              f"{want.describe()}; got "
                              f"{got.describe() if got else type(source).__name__}")
        if not parts:
            raise FanOutError("give at least one part (SpatialRun.row_parts / grid_parts)")
        covered = torch.zeros(run.out_shape[2:], dtype=torch.bool)
        for i, p in enumerate(parts):
            if not isinstance(p, Part) or run.part(p.out) != p:
                raise FanOutError(f"parts[{i}] is not a part of {self.model} "
                                  f"{self.first}..{self.last}; make parts with this fan-out's "
                                  "spatial.part / row_parts / grid_parts")
            (r0, r1), (c0, c1) = p.out
            covered[r0:r1, c0:c1] = True
        if not bool(covered.all()):
            raise FanOutError(f"the parts leave {int((~covered).sum())} output positions of "
                              f"{self.last!r} uncovered")
        if assign is None:
            return [self.endpoints[i % len(self.endpoints)] for i in range(len(parts))]
        if len(assign) != len(parts):
            raise FanOutError(f"assign gives {len(assign)} endpoints for {len(parts)} parts")
        hosts = []
        for i, a in enumerate(assign):
            if isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(self.endpoints):
                hosts.append(self.endpoints[a])
            elif isinstance(a, str) and (a in self.endpoints or a == LOCAL):
                hosts.append(a)
            else:
                raise FanOutError(f"assign[{i}] is {a!r}; give one of the endpoints "
                                  f"{list(self.endpoints)}, its index, or {LOCAL!r} (here)")
        return hosts

    def _part(self, i: int, part: Part, assigned: str,
              source: torch.Tensor) -> tuple[torch.Tensor, PartReport]:
        """Part ``i`` on ``assigned``, else on the next endpoint that has not failed, else
        here: its output and its report. Runs on a pool thread."""
        t0 = time.perf_counter()
        (sr0, sr1), (sc0, sc1) = part.source
        crop = source[:, :, sr0:sr1, sc0:sc1]
        if assigned == LOCAL:  # the coordinator's own part: no wire
            with torch.inference_mode():
                y = self.spatial.run_part(part, crop)
            now = time.perf_counter()
            return y, PartReport(i, part.out, LOCAL, LOCAL, now - t0, now - t0, 0, 0, False)
        (r0, r1), (c0, c1) = part.out
        request = pb.RunPartRequest(model=self.model, batch=self.batch or 0, first=self.first,
                                    last=self.last, reply_codec=self.reply_codec,
                                    request_id=f"{self._id_prefix}{next(self._ids)}")
        request.out.row_lo, request.out.row_hi = r0, r1
        request.out.col_lo, request.out.col_hi = c0, c1
        frame = wire.fill_value(request.source, crop, self.codec)
        sent, errors = 0, []
        host: str | None = assigned
        tried: set[str] = set()
        while host is not None:
            tried.add(host)
            skip = self._skipped(host)
            if skip:
                errors.append(skip)
            else:
                sent += frame
                try:
                    y, reply = self._call(host, request, part)
                except _Failed as exc:
                    errors.append(str(exc))
                    with self._lock:
                        self._down[host] = time.monotonic() + self.retry_after_s
                else:
                    return y, PartReport(i, part.out, assigned, host, reply.compute_s,
                                         time.perf_counter() - t0, sent,
                                         len(reply.output.tensor), host != assigned,
                                         tuple(errors))
            host = next((e for e in self._after(host) if e not in tried), None)
        if not self.fallback:
            raise FanOutError(f"part {i} {part.out} of {self.model} {self.first}..{self.last}: "
                              f"every endpoint failed: {'; '.join(errors)}")
        started = time.perf_counter()
        with torch.inference_mode():
            y = self.spatial.run_part(part, crop)
        now = time.perf_counter()
        return y, PartReport(i, part.out, assigned, LOCAL, now - started, now - t0, sent, 0,
                             True, tuple(errors))

    def _after(self, host: str) -> list[str]:
        """The other endpoints, in order, starting after ``host``."""
        k = self.endpoints.index(host)
        return list(self.endpoints[k + 1:] + self.endpoints[:k])

    def _skipped(self, host: str) -> str:
        """Why ``host`` is skipped now ("" when it is not)."""
        with self._lock:
            until = self._down.get(host, 0.0)
        left = until - time.monotonic()
        return f"{host}: skipped, it failed within the last {self.retry_after_s:g} s " \
               f"({left:.2f} s to go)" if left > 0 else ""

    def _call(self, host: str, request: pb.RunPartRequest,
              part: Part) -> tuple[torch.Tensor, pb.RunPartReply]:
        """One try of RunPart on ``host``: the part's output, checked, and the reply."""
        try:
            reply = self._stub(host).RunPart(request, timeout=self.deadline_s,
                                             metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise _Failed(f"{host} answered {code.name if code else 'an error'}: "
                          f"{details}") from None
        try:
            y, _ = wire.from_value(reply.output, self.limits)
        except wire.WireError as exc:
            raise _Failed(f"{host} sent an undecodable part: {exc}") from None
        want, got = output_signature(self.spatial, part), wire.signature_or_none(y)
        if got != want:
            raise _Failed(f"{host} sent {got.describe() if got else type(y).__name__} for "
                          f"part {part.out}, which is {want.describe()}")
        return y, reply

    def _stub(self, host: str) -> pb_grpc.TierServerStub:
        with self._lock:
            if host not in self._stubs:
                channel = open_channel(host, self.security,
                                       channel_options(self.max_message_bytes) + RECONNECT,
                                       sync=True)
                self._stubs[host] = (channel, pb_grpc.TierServerStub(channel))
            return self._stubs[host][1]

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()

    def __enter__(self) -> "FanOut":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
