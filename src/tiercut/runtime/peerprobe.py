"""``ProbePeer``: a tier server times Probe calls to another tier server, so that a lister
(``tiercut cluster discover``) learns the link between two nodes it is not on.

An RPC that makes a server dial out is a way to aim it at anything its network reaches, so
the server dials only addresses it already knows: its ``--peers`` allowlist, or tiercut nodes
it discovered itself on the LAN (``known``: a callable, filled by tiercut.discover's watcher
when the server announces; the runtime does not import discovery). Anything else is refused
INVALID_ARGUMENT naming the address. The probe sizes are bounded (count, each size, and the
bytes in all) so that one request cannot make the server send gigabytes.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import grpc

from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from .security import ClientSecurity, metadata as security_metadata, open_channel
from .status import Abort
from .transport import channel_options

MAX_SIZES = 8
MAX_SIZE_BYTES = 16 << 20
MAX_REPEAT = 10
MAX_TOTAL_BYTES = 64 << 20
DEFAULT_REPEAT = 3
PROBE_TIMEOUT_S = 10.0  # one Probe call to the peer; a dead peer is answered UNAVAILABLE


class PeerProber:
    """The server side of ProbePeer: checks the request, dials the peer, times the probes."""

    def __init__(self, peers: Iterable[str] = (),
                 known: Callable[[], Iterable[str]] | None = None,
                 security: ClientSecurity | None = None):
        self.peers = frozenset(peers)
        self.known = known
        self.security = security

    def allowed(self, address: str) -> bool:
        return address in self.peers or (self.known is not None and address in set(self.known()))

    def check(self, request: pb.ProbePeerRequest, own_endpoint: str) -> tuple[list[int], int]:
        """(sizes, repeat) of a request that may be run, or Abort INVALID_ARGUMENT saying why."""
        address = request.address
        if not self.allowed(address):
            known = sorted(self.peers | set(self.known() if self.known else ()))
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"{own_endpoint}: ProbePeer address {address!r} is not a peer this "
                        f"server knows; it dials only its --peers and the tiercut nodes it "
                        f"discovered ({', '.join(known) or 'none yet'})")
        sizes = list(request.sizes)
        if not 1 <= len(sizes) <= MAX_SIZES:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"ProbePeer: {len(sizes)} sizes; give 1 to {MAX_SIZES}")
        bad = [s for s in sizes if not 0 <= s <= MAX_SIZE_BYTES]
        if bad:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"ProbePeer: size {bad[0]} bytes; each size must be 0 to "
                        f"{MAX_SIZE_BYTES} bytes")
        repeat = request.repeat or DEFAULT_REPEAT
        if repeat > MAX_REPEAT:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"ProbePeer: repeat {repeat}; give 1 to {MAX_REPEAT} (0: {DEFAULT_REPEAT})")
        if sum(sizes) * repeat > MAX_TOTAL_BYTES:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"ProbePeer: {sum(sizes) * repeat} bytes in all (sizes x repeat) is over "
                        f"the {MAX_TOTAL_BYTES} accepted")
        return sizes, repeat

    async def probe(self, request: pb.ProbePeerRequest, own_endpoint: str,
                    max_message_bytes: int) -> pb.ProbePeerReply:
        sizes, repeat = self.check(request, own_endpoint)
        address = request.address
        # its own channel per request: probes are rare, and a shared one would carry the
        # inference streams' traffic, which is not what is being measured
        channel = open_channel(address, self.security, channel_options(max_message_bytes))
        stub = pb_grpc.TierServerStub(channel)
        metadata = security_metadata(self.security)
        reply = pb.ProbePeerReply(address=address)
        try:
            # one unmeasured call first: the channel's connection set-up is not the link's rate
            await stub.Probe(pb.ProbeRequest(), timeout=PROBE_TIMEOUT_S, metadata=metadata)
            for _ in range(repeat):
                for size in sizes:  # interleaved, so a slow spell does not hit one size only
                    padding = bytes(size)
                    t0 = time.perf_counter()
                    await stub.Probe(pb.ProbeRequest(padding=padding), timeout=PROBE_TIMEOUT_S,
                                     metadata=metadata)
                    reply.samples.add(bytes=size, seconds=time.perf_counter() - t0)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                code = grpc.StatusCode.FAILED_PRECONDITION  # the peer's error, not the caller's
            raise Abort(code, f"{own_endpoint}: probing peer {address} failed "
                              f"({exc.code().name}): {exc.details()}") from None
        finally:
            await channel.close()
        return reply
