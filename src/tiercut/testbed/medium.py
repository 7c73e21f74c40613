"""What the testbed's links share: every pair of hosts has its own shaping proxy, but all the
proxies run in one process beside this one (the source, which serialises every frame) on the
machine's few cores, so together they carry at most so many bytes a second however the
frames are spread. ``measure_medium`` floods every node's Probe at once, through the links a
plan's first hop uses, with frame-sized payloads, and returns the bits per second that came
through: the cluster's shared ``Medium`` (the planner charges every transfer on it)."""
from __future__ import annotations

import asyncio
import time
from typing import Sequence

import grpc

from ..runtime import tiercut_pb2 as pb
from ..runtime import tiercut_pb2_grpc as pb_grpc
from ..runtime.transport import channel_options


def measure_medium(addresses: Sequence[str], frame_bytes: int, seconds: float = 3.0,
                   per_address: int = 2) -> float:
    """Bits per second through ``addresses`` (the proxies to every node) together, each
    with ``per_address`` payloads of ``frame_bytes`` in flight, for about ``seconds``."""
    if frame_bytes <= 0 or not addresses:
        raise ValueError(f"give addresses and a frame size > 0, got {list(addresses)} and "
                         f"{frame_bytes!r}")
    padding = bytes(frame_bytes)

    async def flood() -> tuple[int, float]:
        channels = [grpc.aio.insecure_channel(a, options=channel_options())
                    for a in addresses]
        try:
            stubs = [pb_grpc.TierServerStub(c) for c in channels]
            await asyncio.gather(*(s.Probe(pb.ProbeRequest(), timeout=30) for s in stubs))
            sent = 0
            start = time.perf_counter()
            stop = start + seconds

            async def loop(stub: pb_grpc.TierServerStub) -> None:
                nonlocal sent
                while time.perf_counter() < stop:
                    reply = await stub.Probe(pb.ProbeRequest(padding=padding), timeout=30)
                    sent += reply.received
            await asyncio.gather(*(loop(s) for s in stubs for _ in range(per_address)))
            return sent, time.perf_counter() - start
        finally:
            for c in channels:
                await c.close()
    sent, elapsed = asyncio.run(flood())
    return 8.0 * sent / elapsed
