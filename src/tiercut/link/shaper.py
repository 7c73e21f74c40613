"""A userspace TCP proxy that emulates one network link: a rate limit and a one-way delay.

Each direction (client -> server "up", server -> client "down") has its own token bucket,
shared by every connection through the proxy, as a real link is. Per connection and direction:

    source --read 64 KiB--> split into segments (~5 ms of transmission each)
           --bucket: wait until the segment is serialised (time t)-->
           queue of (t + delay, segment), bounded in bytes (backpressure)
           --deliverer: sleep until each timestamp, write--> destination

so delays overlap (a pipe, not a per-chunk sleep) and a small message is not held behind a
64 KiB chunk. End of stream is delayed like data and passed on as a half-close; a reset or
error on either side aborts both. No root needed; loopback only unless told otherwise.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import TiercutError
from ..planner.scenario import ScenarioError, parse_rate, parse_seconds
from .traces import BandwidthTrace

READ_BYTES = 64 * 1024
SEGMENT_S = 0.005            # a segment is about this much transmission time
MIN_SEGMENT = 1024
BURST_S = 0.002              # the bucket may bank this much idle time
MIN_QUEUE_BYTES = 1 << 20    # per connection and direction; at least 2x bandwidth-delay product
UNLIMITED_QUEUE_BYTES = 16 << 20
TRACE_TICK_S = 0.02
_EOF = b""


class LinkError(TiercutError, ValueError):
    """A bad link setting: rate, delay or address."""


def check_rate(value: str | float | None) -> float | None:
    """'10mbit', 1e7 -> bit/s; None or 0 -> None (unlimited)."""
    if value is None:
        return None
    try:
        bps = parse_rate(value)
    except ScenarioError as exc:
        raise LinkError(str(exc)) from None
    if not (math.isfinite(bps) and bps >= 0):
        raise LinkError(f"rate {value!r} must be a finite number of bit/s >= 0 (0 = unlimited)")
    return bps or None


def check_delay(value: str | float | None) -> float:
    """'20ms', 0.02 -> seconds; None -> 0."""
    if value is None:
        return 0.0
    try:
        seconds = parse_seconds(value)
    except ScenarioError as exc:
        raise LinkError(str(exc)) from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise LinkError(f"delay {value!r} must be a finite duration >= 0")
    return seconds


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:80', ':8080' (loopback) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise LinkError(f"address {text!r} is not HOST:PORT like 127.0.0.1:50051 "
                        "(port 0-65535)")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class TokenBucket:
    """Bytes per second with a small burst. ``issued`` counts bytes handed out, ``credited``
    bytes the link has carried; a caller waits until the link has carried its bytes, so callers
    are served first come, first served and a rate change applies from the moment it is made."""

    def __init__(self, rate_bps: float | None, burst_s: float = BURST_S) -> None:
        self._loop = asyncio.get_running_loop()
        self._rate = rate_bps        # None: unlimited; 0: stalled (a trace outage)
        self._burst_s = burst_s
        self._issued = 0.0
        self._credited = 0.0
        self._last = self._loop.time()
        self._changed = self._loop.create_future()

    @property
    def rate_bps(self) -> float | None:
        return self._rate

    def set_rate(self, rate_bps: float | None) -> None:
        self._refill()
        self._rate = rate_bps
        if rate_bps:   # credit banked at the old rate must not outlast the new burst
            self._credited = min(self._credited, self._issued + self._burst(rate_bps))
        self._changed.set_result(None)
        self._changed = self._loop.create_future()

    def _refill(self) -> None:
        now = self._loop.time()
        if self._rate is None:
            self._credited = max(self._credited, self._issued)
        elif self._rate > 0:
            self._credited = min(self._credited + (now - self._last) * self._rate / 8,
                                 max(self._credited, self._issued + self._burst(self._rate)))
        self._last = now

    def _burst(self, rate: float) -> float:
        return max(rate / 8 * self._burst_s, MIN_SEGMENT)

    async def take(self, n: int) -> float:
        """Wait until ``n`` more bytes have been carried; return the loop time when they were."""
        self._refill()
        self._issued += n
        mine = self._issued
        while True:
            self._refill()
            if self._credited >= mine:
                return self._loop.time()
            wait = (mine - self._credited) * 8 / self._rate if self._rate else None
            await asyncio.wait([self._changed], timeout=wait)

    def segment(self) -> int:
        if not self._rate:
            return READ_BYTES
        return int(min(READ_BYTES, max(MIN_SEGMENT, self._rate / 8 * SEGMENT_S)))


class _ByteQueue:
    """(due time, bytes) items, bounded by the bytes they hold (one item always fits)."""

    def __init__(self, limit) -> None:
        self._items: collections.deque[tuple[float, bytes]] = collections.deque()
        self._bytes = 0
        self._limit = limit
        self._cond = asyncio.Condition()

    async def put(self, due: float, data: bytes) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._bytes or
                                      self._bytes + len(data) <= self._limit())
            self._items.append((due, data))
            self._bytes += len(data)
            self._cond.notify_all()

    async def get(self) -> tuple[float, bytes]:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            due, data = self._items.popleft()
            self._bytes -= len(data)
            self._cond.notify_all()
            return due, data


@dataclass
class LinkStats:
    bytes_up: int = 0        # client -> server, delivered
    bytes_down: int = 0      # server -> client, delivered
    connections: int = 0
    errors: list[str] = field(default_factory=list)


class ShapingProxy:
    """Listen on ``listen``; relay each connection to ``to`` through an emulated link.

    ``rate_bps`` (bit/s, each direction; None or 0 = unlimited) and ``delay_s`` (one way) accept
    numbers or strings like '10mbit', '20ms'. With ``trace``, the rate follows
    ``trace.rate_at(seconds since start) * trace_scale`` instead, updated every 20 ms (a 0
    sample stalls the link; ``set_rate`` holds only until the next update).

        async with ShapingProxy(to=("127.0.0.1", 50051), rate_bps="10mbit", delay_s="20ms") as p:
            connect to ("127.0.0.1", p.port)

        with ShapingProxy.in_thread(to=..., rate_bps=1e7) as p:   # for synchronous code
            p.address, p.set_rate(5e6)
    """

    def __init__(self, listen: tuple[str, int] = ("127.0.0.1", 0), to: tuple[str, int] | None = None,
                 rate_bps: str | float | None = None, delay_s: str | float | None = 0.0,
                 trace: BandwidthTrace | None = None, trace_scale: float = 1.0) -> None:
        if to is None:
            raise LinkError("ShapingProxy needs a destination: to=(host, port)")
        self.listen = _check_pair(listen, "listen")
        self.to = _check_pair(to, "to")
        self._rate = check_rate(rate_bps)
        self.delay_s = check_delay(delay_s)
        if trace is not None and not (math.isfinite(trace_scale) and trace_scale >= 0):
            raise LinkError(f"trace scale must be a finite number >= 0, got {trace_scale!r}")
        self.trace = trace.scaled(trace_scale) if trace is not None and trace_scale != 1 else trace
        self.stats = LinkStats()
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._up: TokenBucket | None = None
        self._down: TokenBucket | None = None
        self.started_at = 0.0    # loop.time() at start(): time.monotonic() on Linux

    # public ------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise LinkError("the proxy is not started")
        return self.listen[0], self.port

    @property
    def rate_bps(self) -> float | None:
        """The rate last set (bit/s, None = unlimited); with a trace, the rate now."""
        if self.trace is not None and self._up is not None:
            return self._up.rate_bps
        return self._rate

    async def start(self) -> "ShapingProxy":
        if self._server is not None:
            raise LinkError("the proxy is already started")
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        first = self.trace.rate_at(0) if self.trace is not None else self._rate
        self._up, self._down = TokenBucket(first), TokenBucket(first)
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.trace is not None:
            self._spawn(self._follow_trace())
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def set_rate(self, rate_bps: str | float | None) -> None:
        """Change both directions' rate now (None or 0 = unlimited). Safe from any thread."""
        rate = check_rate(rate_bps)
        self._rate = rate
        if self._loop is None:
            return
        if _running_loop() is self._loop:
            self._apply(rate)
        else:
            self._loop.call_soon_threadsafe(self._apply, rate)

    async def __aenter__(self) -> "ShapingProxy":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, *args, **kwargs) -> Iterator["ShapingProxy"]:
        """Run a proxy on its own event loop in a background thread; yields it started
        (``.address`` is the bound address). Stopped and joined on exit."""
        proxy = cls(*args, **kwargs)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="tiercut-link", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
            yield proxy
        finally:
            try:
                asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
                loop.close()

    # private -----------------------------------------------------------------------------
    def _apply(self, rate: float | None) -> None:
        for bucket in (self._up, self._down):
            if bucket is not None and bucket.rate_bps != rate:
                bucket.set_rate(rate)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _follow_trace(self) -> None:
        assert self.trace is not None
        while True:
            await asyncio.sleep(TRACE_TICK_S)
            self._apply(self.trace.rate_at(self._loop.time() - self.started_at))

    def _queue_limit(self) -> int:
        rate = self._up.rate_bps if self._up is not None else None
        if rate is None:
            return UNLIMITED_QUEUE_BYTES
        return int(max(MIN_QUEUE_BYTES, 2 * rate / 8 * (self.delay_s + SEGMENT_S)))

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        # Our own task, not asyncio's handler task: Python 3.11 logs an error when the
        # handler task is cancelled, as stop() does.
        self._writers.add(c_writer)
        self._spawn(self._connection(c_reader, c_writer))

    async def _connection(self, c_reader: asyncio.StreamReader,
                          c_writer: asyncio.StreamWriter) -> None:
        s_writer = None
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection(*self.to)
            except OSError as exc:
                self.stats.errors.append(f"connect {self.to}: {exc}")
                return
            self._writers.add(s_writer)
            self.stats.connections += 1
            pumps = [self._spawn(self._pump(c_reader, s_writer, self._up, "bytes_up")),
                     self._spawn(self._pump(s_reader, c_writer, self._down, "bytes_down"))]
            try:
                await asyncio.gather(*pumps)
            finally:
                for p in pumps:
                    p.cancel()
        except BaseException as exc:  # a reset or write error on either side: reset both
            for w in (c_writer, s_writer):
                if w is not None:
                    w.transport.abort()
            if not isinstance(exc, OSError):
                raise     # cancelled by stop(), or a bug: let asyncio report it
            self.stats.errors.append(repr(exc))
        finally:
            for w in (c_writer, s_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    bucket: TokenBucket, counter: str) -> None:
        queue = _ByteQueue(self._queue_limit)
        deliver = self._spawn(self._deliver(queue, writer, counter))
        try:
            while True:
                data = await reader.read(READ_BYTES)
                if not data:
                    await queue.put(self._loop.time() + self.delay_s, _EOF)
                    break
                view = memoryview(data)
                while view:
                    size = bucket.segment()
                    seg, view = view[:size], view[size:]
                    sent = await bucket.take(len(seg))
                    await queue.put(sent + self.delay_s, bytes(seg))
            await deliver
        finally:
            deliver.cancel()

    async def _deliver(self, queue: _ByteQueue, writer: asyncio.StreamWriter, counter: str) -> None:
        while True:
            due, data = await queue.get()
            wait = due - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _EOF or not data:
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            setattr(self.stats, counter, getattr(self.stats, counter) + len(data))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_pair(addr, what: str) -> tuple[str, int]:
    if isinstance(addr, str):
        return parse_address(addr)
    try:
        host, port = addr
        port = int(port)
    except (TypeError, ValueError):
        raise LinkError(f"{what} address {addr!r} is not (host, port) or 'HOST:PORT'") from None
    if not 0 <= port <= 65535:
        raise LinkError(f"{what} port {port} is not in 0-65535")
    return str(host), port
