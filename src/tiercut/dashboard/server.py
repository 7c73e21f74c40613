"""``Dashboard``: the page, its script and the events (server-sent events), served by aiohttp
on an event loop of its own in a daemon thread, so that synchronous code (the testbed, a
bench) publishes from wherever it runs: ``start(port)``, ``publish(event)``, ``stop()``.

It binds 127.0.0.1 only: the page shows a user's model and plans to whoever can reach it.
A page that connects late first gets the plans seen so far and the recent history
(``Recorder``), then every event as it is published.
"""
from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from ..errors import TiercutError
from .events import check
from .recorder import Recorder

STATIC = Path(__file__).parent / "static"
HOST = "127.0.0.1"
QUEUE = 1000  # events waiting for one slow page before it misses some
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and browsers from timing out


class DashboardError(TiercutError, ValueError):
    """A port the dashboard cannot listen on, or a dashboard used before it started."""


def check_port(value: Any) -> int:
    """``value`` (an int or its digits) as a port to listen on; 0 picks a free one."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise DashboardError(f"dashboard port {value!r} is not a port: give 0-65535 "
                             "(0 picks a free one)")
    return int(text)


class Dashboard:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock, self._t0 = clock, clock()
        self.recorder = Recorder()
        self.url = ""
        self._queues: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self, port: Any = 0) -> str:
        """Listen on 127.0.0.1:``port``; returns the page's URL."""
        port = check_port(port)
        if self._loop is not None:
            raise DashboardError(f"dashboard already serving at {self.url}")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tiercut-dashboard")
        self._thread.start()
        try:
            bound = self._call(self._serve(port))
        except OSError as exc:
            self._close_loop()
            if exc.errno == errno.EADDRINUSE:
                raise DashboardError(f"dashboard port {port} on {HOST} is in use: pick "
                                     "another, or 0 for a free one") from None
            raise DashboardError(f"dashboard cannot listen on {HOST}:{port}: "
                                 f"{exc.strerror or exc}") from None
        self.url = f"http://{HOST}:{bound}/"
        return self.url

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Check ``event`` (EventError names a bad field), stamp its ``t`` if it has none,
        and send it to every page; returns it as sent."""
        event = dict(event)
        event.setdefault("t", self.clock() - self._t0)
        check(event)
        if self._loop is None:
            raise DashboardError("dashboard not started: call start(port) first")
        self._loop.call_soon_threadsafe(self._deliver, event)
        return event

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._close_loop()

    def __enter__(self) -> "Dashboard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- on the dashboard's loop --------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    async def _serve(self, port: int) -> int:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/events", self._events)
        app.router.add_get("/state", self._state)
        app.router.add_static("/static/", STATIC)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        return self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        for queue in self._queues:
            queue.put_nowait(None)  # each page's stream ends, so cleanup need not wait
        await self._runner.cleanup()

    def _deliver(self, event: dict[str, Any]) -> None:
        self.recorder.add(event)
        for queue in self._queues:
            if queue.qsize() < QUEUE:  # a page that stopped reading misses events, nothing more
                queue.put_nowait(event)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.recorder.snapshot())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue = asyncio.Queue()
        backlog = self.recorder.snapshot()  # taken as the queue joins: nothing lost between
        self._queues.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            await response.write("".join(map(_sse, backlog)).encode())
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                await response.write(_sse(event).encode())
        except ConnectionError:
            pass  # the page went away
        finally:
            self._queues.discard(queue)
        return response


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
