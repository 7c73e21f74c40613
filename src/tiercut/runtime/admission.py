"""What a tier server lets in, and the load it reports.

``max_in_flight`` bounds the requests being handled at once and ``max_per_client`` those of
one client (named by ``client_id``); a request over either bound is refused at once with the
load. The counts, with the service-time average, are the ``Load`` every reply carries.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import grpc

from . import wire
from .security import CLIENT_ID_HEADER

_EWMA = 0.2  # weight of the newest compute time in the service-time average


@dataclass
class Stats:
    waiting: int = 0
    in_flight: int = 0
    service_s: float = 0.0
    served: int = 0
    shed: int = 0
    expired: int = 0
    cancelled: int = 0


class Admission:
    """Counts requests in and out against the bounds. ``stats`` changes on the event loop
    (admit, release) and in worker threads (under ``lock``)."""

    def __init__(self, max_in_flight: int, max_per_client: int):
        self.max_in_flight, self.max_per_client = max_in_flight, max_per_client
        self.stats = Stats()
        self.lock = threading.Lock()
        self._per_client: dict[str, int] = {}
        self._drained: asyncio.Event | None = None

    def load(self) -> wire.Load:
        s = self.stats
        return wire.Load(s.waiting, s.in_flight, s.service_s, s.served, self.max_in_flight,
                         s.shed, s.expired, s.cancelled)

    def admit(self, client: str, endpoint: str) -> tuple[grpc.StatusCode, str, wire.Load] | None:
        """Count a request in, or say why it is refused (status, message, load) when over a
        bound. Runs on the event loop with no awaits, before anything is decoded."""
        stats = self.stats
        held = self._per_client.get(client, 0)
        if stats.in_flight >= self.max_in_flight or held >= self.max_per_client:
            stats.shed += 1
            load = self.load()
            why = (f"{stats.in_flight} requests in flight, the most it takes is "
                   f"{self.max_in_flight}" if stats.in_flight >= self.max_in_flight else
                   f"client {client[:64]!r} has {held} requests in flight, the most one "
                   f"client may have is {self.max_per_client}")
            return (grpc.StatusCode.RESOURCE_EXHAUSTED, f"{endpoint} is overloaded: {why}; "
                    f"finish locally or try another host (load: {wire.load_to_text(load)})",
                    load)
        stats.in_flight += 1
        self._per_client[client] = held + 1
        return None

    def release(self, client: str) -> None:
        self.stats.in_flight -= 1
        left = self._per_client[client] - 1
        if left:
            self._per_client[client] = left
        else:
            del self._per_client[client]
        if not self.stats.in_flight and self._drained is not None:
            self._drained.set()

    async def drain(self, grace: float | None) -> None:
        """Wait until every request in flight is answered, for at most ``grace`` seconds."""
        if self.stats.in_flight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except asyncio.TimeoutError:
                pass  # the grace ran out: what is still running is cancelled

    def record_service(self, compute_s: float) -> None:
        """Fold one stage run into the service-time EWMA (the first run sets it)."""
        stats = self.stats
        with self.lock:
            stats.service_s = compute_s if stats.served == 0 and stats.service_s == 0 else (
                (1 - _EWMA) * stats.service_s + _EWMA * compute_s)

    def count_served(self) -> None:
        with self.lock:
            self.stats.served += 1


def client_id(context: Any) -> str:
    """The ``tiercut-client-id`` metadata, else the peer's address without its port."""
    for key, value in context.invocation_metadata() or ():
        if key == CLIENT_ID_HEADER:
            text = value if isinstance(value, str) else value.decode("latin-1")
            return "id:" + text[:64]
    peer = context.peer() or ""
    return "peer:" + (peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer)[:80]
