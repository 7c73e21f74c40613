"""A tier server's way on to the next tier: one InferStream per (next host, client), so the next
tier bounds requests per client as this one does, and failover to the next tier's alternates
when a host is down or overloaded."""
from __future__ import annotations

import time

import grpc

from . import tiercut_pb2 as pb
from .security import CLIENT_ID_HEADER, ClientSecurity, open_channel
from .security import metadata as security_metadata
from .stagecache import Prepared
from .status import Abort
from .stream import CallFailed, InferStream
from .transport import channel_options

MAX_FORWARD_STREAMS = 256


class Forwarder:
    """Channels and streams to the next tiers, opened when first needed."""

    def __init__(self, security: ClientSecurity | None, max_message_bytes: int):
        self.security, self.max_message_bytes = security, max_message_bytes
        self._channels: dict[str, grpc.aio.Channel] = {}  # to next tiers
        self._streams: dict[tuple[str, str], InferStream] = {}  # (next tier, client)
        self._metadata = security_metadata(security)  # the next tier's token

    def _stream(self, endpoint: str, client: str) -> InferStream:
        """The stream to ``endpoint`` that carries ``client``'s requests: one per client, so
        the next tier bounds requests per client as this one does (the id travels in the
        stream's metadata). The least recently used go beyond MAX_FORWARD_STREAMS."""
        key = (endpoint, client)
        found = self._streams.pop(key, None)
        if found is None:
            if endpoint not in self._channels:
                self._channels[endpoint] = open_channel(endpoint, self.security,
                                                        channel_options(self.max_message_bytes))
            metadata = self._metadata + (((CLIENT_ID_HEADER, client[3:]),)
                                         if client.startswith("id:") else ())
            found = InferStream(self._channels[endpoint], metadata)
            while len(self._streams) >= MAX_FORWARD_STREAMS:
                self._streams.pop(next(iter(self._streams))).close()
        self._streams[key] = found
        return found

    async def forward(self, p: Prepared, request: pb.InferRequest, deadline: float | None,
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
                    raise Abort(code, f"{where}: next tier {endpoint} is unreachable "
                                      f"({code.name}): {exc.details}") from None
                raise Abort(code, f"{where}: next tier {endpoint} answered {code.name}: "
                                  f"{exc.details}") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
