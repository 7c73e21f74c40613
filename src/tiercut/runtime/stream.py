"""Infer over one long-lived InferStream call per host: the sender's side.

A unary Infer sets up a call per request, which on loopback costs about as much as a small
tensor's whole hop; one stream per (host, event loop) carries every request instead. Requests
are written as they come, answers arrive in completion order and are matched to their request
by id, so several requests pipeline on one stream. The server answers a refused request in-band
(``InferStreamReply.code``) and the stream goes on; ``CallFailed`` carries that status, the same
code and details the unary Infer would have ended with.

When the stream itself ends (the server stopped or drains, the connection broke), every request
still waiting on it fails with the stream's status, and the next request opens a new stream. A
request with a timeout fails DEADLINE_EXCEEDED when no answer came in time; the server is told
the timeout too (``InferRequest.timeout_s``) and drops the request if it is still queued then.

``cancel(request_id)`` tells the server in-band (``InferRequest.cancel``) that a request is no
longer wanted: the server drops it unrun if it has not started computing and answers it
CANCELLED, or lets it finish and answers it as usual. Either answer comes after the sender gave
up on the request, so it is dropped on arrival like any answer nobody waits for (request ids
are unique on a stream: SplitClient numbers its requests, send_redundant its copies).
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Sequence

import grpc

from . import tiercut_pb2 as pb
from . import wire

METHOD = "/tiercut.runtime.TierServer/InferStream"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CallFailed(Exception):
    """A request's status other than OK: from the server in-band, or the stream's own end."""

    def __init__(self, code: grpc.StatusCode, details: str, load: wire.Load | None = None):
        super().__init__(f"{code.name}: {details}")
        self.code, self.details, self.load = code, details, load


class _Call:
    """One InferStream call and the requests waiting on it."""

    def __init__(self, call: Any):
        self.call = call
        self.pending: dict[str, asyncio.Future] = {}
        self.ended: CallFailed | None = None
        self.reader: asyncio.Task | None = None


class InferStream:
    """Requests to one host over one stream; use from the event loop that made it."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()):
        self._open_call = channel.stream_stream(
            METHOD, request_serializer=pb.InferRequest.SerializeToString,
            response_deserializer=pb.InferStreamReply.FromString)
        self._metadata = tuple(metadata) or None
        self._current: _Call | None = None
        self._write_lock = asyncio.Lock()  # one write at a time on a call
        self._cancels: set[asyncio.Task] = set()  # cancels being written

    async def infer(self, request: pb.InferRequest, timeout: float | None = None) -> pb.InferReply:
        """The reply to ``request``, or CallFailed with the status it got."""
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"no time left to send the request (timeout {timeout} s)")
        request.timeout_s = timeout or 0.0
        current = self._current
        if current is None or current.ended is not None:
            current = self._current = self._open()
        rid = request.request_id
        if rid in current.pending:
            raise ValueError(f"request id {rid!r} is already in flight on this stream")
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        current.pending[rid] = answer
        timer = None if timeout is None else loop.call_later(
            timeout, _give_up, answer, f"no answer within {timeout:.3g} s")
        try:
            async with self._write_lock:
                if current.ended is not None:
                    raise current.ended
                try:
                    await current.call.write(request)
                except grpc.aio.AioRpcError as exc:
                    raise _stream_failed(exc) from None
                except asyncio.InvalidStateError:  # the call finished between check and write
                    raise current.ended or CallFailed(
                        grpc.StatusCode.UNAVAILABLE, "the stream ended") from None
            reply = await answer
        finally:
            current.pending.pop(rid, None)
            if timer is not None:
                timer.cancel()
            if not answer.done():
                answer.cancel()
            elif not answer.cancelled():
                answer.exception()  # seen: a failed write leaves its answer unawaited
        if reply.code:
            load = wire.load_from_pb(reply.load) if reply.HasField("load") else None
            raise CallFailed(_CODES.get(reply.code, grpc.StatusCode.UNKNOWN), reply.message,
                             load)
        return reply.reply

    def cancel(self, request_id: str) -> asyncio.Task | None:
        """Ask the server to drop ``request_id`` unless it has started computing, written in
        the background: the task writing it (awaiting it is optional), or None when the request
        is not waiting on this stream (nothing to cancel). Best effort: when the stream ends
        first, the request went with it. The caller still gives up on the request itself (it
        cancels the task awaiting ``infer``); the answer that comes later is dropped."""
        current = self._current
        if current is None or current.ended is not None or request_id not in current.pending:
            return None
        task = asyncio.get_running_loop().create_task(self._write_cancel(current, request_id))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)
        return task

    async def _write_cancel(self, current: _Call, request_id: str) -> None:
        async with self._write_lock:  # after the request's own write, when that is queued
            if current.ended is not None:
                return
            try:
                await current.call.write(pb.InferRequest(request_id=request_id, cancel=True))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the stream ended meanwhile: its reader fails what waited on it

    def _open(self) -> _Call:
        current = _Call(self._open_call(metadata=self._metadata))
        current.reader = asyncio.get_running_loop().create_task(self._read(current))
        return current

    async def _read(self, current: _Call) -> None:
        ended = CallFailed(grpc.StatusCode.UNAVAILABLE, "the server ended the stream")
        try:
            while True:
                reply = await current.call.read()
                if reply is grpc.aio.EOF:
                    break
                answer = current.pending.get(reply.request_id)
                if answer is not None and not answer.done():
                    answer.set_result(reply)
                elif not reply.request_id and reply.code:  # the server could not tell which
                    ended = CallFailed(_CODES.get(reply.code, grpc.StatusCode.UNKNOWN),
                                       reply.message)
                    break
                # else: the answer to a request given up on (timed out, cancelled): dropped
        except grpc.aio.AioRpcError as exc:
            ended = _stream_failed(exc)
        except asyncio.CancelledError:
            ended = _closed()
        finally:
            _end(current, ended)

    def close(self) -> None:
        """End the stream now: requests still waiting on it fail CANCELLED."""
        current, self._current = self._current, None
        if current is not None:
            current.reader.cancel()
            _end(current, _closed())  # here too: a reader cancelled before it ran cleans nothing


def _closed() -> CallFailed:
    return CallFailed(grpc.StatusCode.CANCELLED, "the stream was closed")


def _end(current: _Call, ended: CallFailed) -> None:
    """Mark ``current`` ended (once): its waiting requests fail with ``ended``, its call is
    cancelled."""
    if current.ended is not None:
        return
    current.ended = ended
    for answer in current.pending.values():
        if not answer.done():
            answer.set_exception(ended)
    current.call.cancel()


def _stream_failed(exc: grpc.aio.AioRpcError) -> CallFailed:
    """The status of a stream that ended under its requests. A connection cut mid-message (the
    host was killed) surfaces as INTERNAL or UNKNOWN from gRPC's core: for the requests that is
    an unreachable host, like any other broken connection."""
    code = exc.code()
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        code = grpc.StatusCode.UNAVAILABLE
    return CallFailed(code, f"the stream broke: {exc.details() or exc.code().name}")


def _give_up(answer: asyncio.Future, why: str) -> None:
    if not answer.done():
        answer.set_exception(CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED, why))
