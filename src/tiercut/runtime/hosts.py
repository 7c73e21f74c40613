"""The tiers' hosts as the device client sees them: the forms ``endpoints`` may take
(``tier_hosts``), and the channel, stub and InferStream to each host, one set per event loop."""
from __future__ import annotations

import asyncio
from typing import Mapping, Sequence

import grpc

from . import tiercut_pb2_grpc as pb_grpc
from .security import ClientSecurity, open_channel
from .stream import InferStream
from .transport import channel_options

# reconnect soon after a server comes back (gRPC's default backoff grows to 120 s)
RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
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


class Channels:
    """The channel to each host, its stub (Prepare) and its InferStream (requests): channels
    belong to the event loop that made them, so one set per loop."""

    def __init__(self, security: ClientSecurity | None, metadata: tuple[tuple[str, str], ...],
                 max_message_bytes: int):
        self.security, self.metadata, self.max_message_bytes = (security, metadata,
                                                                max_message_bytes)
        self._per_loop: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, tuple[
            grpc.aio.Channel, pb_grpc.TierServerStub, InferStream]]]] = {}

    def get(self, host: str) -> tuple[grpc.aio.Channel, pb_grpc.TierServerStub, InferStream]:
        """The channel to ``host`` on this event loop, its stub, and its InferStream."""
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, {})
            self._per_loop[id(loop)] = entry
        if host not in entry[1]:
            channel = open_channel(host, self.security,
                                   channel_options(self.max_message_bytes) + RECONNECT)
            entry[1][host] = (channel, pb_grpc.TierServerStub(channel),
                              InferStream(channel, self.metadata))
        return entry[1][host]

    async def close(self) -> None:
        """Close this event loop's channels and streams."""
        entry = self._per_loop.pop(id(asyncio.get_running_loop()), None)
        if entry:
            for channel, _, stream in entry[1].values():
                stream.close()
                await channel.close()
