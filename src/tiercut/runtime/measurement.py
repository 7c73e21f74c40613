"""What one request measured: its ``Measurement`` (device time, encode and decode, the first
round trip, each hop's transfer time, every server's timings, and whether it fell back).

Transfer time of a hop, as measured: the sender's round trip of the Infer request minus the
receiver's reported handling time (``Timing.total_s``: from receiving the request to having the
reply ready, which includes its decode, compute, forwarding and encode). What remains is the
transport both ways: serialisation in gRPC, the network out and back, and the reply's trip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from . import wire


@dataclass(frozen=True)
class Hop:
    src: str  # tier
    dst: str
    bytes_sent: int  # tensor frame bytes sent up this hop
    bytes_returned: int  # output frame bytes that came back down it
    seconds: float  # sender's RPC round trip minus the receiver's handling time


@dataclass(frozen=True)
class Measurement:
    request_id: str
    device_s: float  # stage 0 on the device
    encode_s: float  # encoding on the device
    decode_s: float  # decoding the outputs on the device
    rpc_s: float  # round trip of the first Infer (0 when none was sent)
    total_s: float
    hops: tuple[Hop, ...] = ()
    servers: tuple[wire.ServerTiming, ...] = ()
    fallback: bool = False
    fallback_reason: str = ""
    fallback_s: float = 0.0  # running the remaining stages locally
    endpoint: str = ""  # the first tier's host that answered ("" when none did)
    failovers: int = 0  # hosts of the first tier tried and given up on before the answer
    hedged: bool = False  # raced against the device (ainfer's hedge); fallback: it won

    @property
    def loads(self) -> dict[str, wire.Load]:
        return {t.tier: t.load for t in self.servers}

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, where, figure) rows for a printed table."""
        ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
        rows = [("device compute", "device", ms(self.device_s)),
                ("device encode/decode", "device", ms(self.encode_s + self.decode_s))]
        for h in self.hops:
            rows.append((f"hop {h.src}->{h.dst}", f"{h.bytes_sent} B up, {h.bytes_returned} B back",
                         ms(h.seconds)))
        for t in self.servers:
            rows.append((f"{t.tier} compute", t.server, f"{ms(t.compute_s)} (queue "
                         f"{ms(t.queue_s)}, dec {ms(t.decode_s)}, enc {ms(t.encode_s)})"))
        if self.fallback:
            rows.append(("FALLBACK (local)", self.fallback_reason[:60], ms(self.fallback_s)))
        rows.append(("total", "", ms(self.total_s)))
        return rows


def hops_from(tiers: Sequence[str], sent: int, returned: int, rpc_s: float,
         servers: tuple[wire.ServerTiming, ...]) -> tuple[Hop, ...]:
    """Each hop of the chain from the device's round trip and the servers' timings."""
    if not servers:
        return ()
    found = [Hop(tiers[0], tiers[1], sent, returned, rpc_s - servers[0].total_s)]
    for j in range(1, len(servers)):
        up, down = servers[j - 1], servers[j]
        found.append(Hop(tiers[j], tiers[j + 1], up.bytes_forwarded, down.bytes_out,
                         up.forward_s - down.total_s))
    return tuple(found)
