"""Link rates from timed Probe calls: this host to a node (Probe), and a node to another node
(ProbePeer: the node times its own Probes to the other).

A Probe's round trip is the call's fixed cost (both ways' delay, gRPC's framing) plus the
padding's bytes over the rate: seconds = intercept + bytes / rate. Per size the median of the
repeats (a stray slow call moves a mean, not a median); the slope is the Theil-Sen estimate,
the median of the slopes between every two sizes, so one bad size does not tilt the line. The
one-way delay is half the intercept. On loopback the rate is memory copies, several Gbit/s.
"""
from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import grpc

from ..runtime import tiercut_pb2 as pb
from ..runtime import tiercut_pb2_grpc as pb_grpc
from ..runtime.transport import channel_options
from .record import BadRecord

SIZES = (0, 256 << 10, 1 << 20, 4 << 20)
REPEAT = 5
TIMEOUT_S = 10.0


class LinkError(BadRecord):
    """A link could not be measured (the node is unreachable, or refused the probe)."""


@dataclass(frozen=True)
class LinkEstimate:
    rate_bps: float  # bits per second
    delay_s: float  # one way
    samples: int
    bounded: bool = False  # True: the slope was not positive, rate is a lower bound

    def text(self) -> str:
        return (f"{'>=' if self.bounded else ''}{_rate_text(self.rate_bps)}, "
                f"{self.delay_s * 1e3:.2f}ms")

    def yaml_value(self) -> str:
        """As the cluster file writes a link: RATE,DELAY."""
        return f"{self.rate_bps / 1e6:.3f}mbit,{self.delay_s * 1e3:.4f}ms"


def _rate_text(bps: float) -> str:
    return f"{bps / 1e9:.2f} Gbit/s" if bps >= 1e9 else f"{bps / 1e6:.1f} Mbit/s"


def fit(samples: Sequence[tuple[int, float]]) -> LinkEstimate:
    """Rate and delay from (bytes, round-trip seconds) pairs of at least two sizes."""
    by_size: dict[int, list[float]] = {}
    for size, seconds in samples:
        by_size.setdefault(int(size), []).append(float(seconds))
    if len(by_size) < 2:
        raise LinkError(f"a link needs probes of at least two sizes, got {sorted(by_size)}")
    points = sorted((s, statistics.median(t)) for s, t in by_size.items())
    slopes = [(t2 - t1) / (s2 - s1) for (s1, t1), (s2, t2) in itertools.combinations(points, 2)]
    slope = statistics.median(slopes)
    intercept = statistics.median(t - slope * s for s, t in points)
    if slope <= 0:  # faster than this host can time: the biggest probe's rate, as a bound
        size, seconds = points[-1]
        return LinkEstimate(size * 8 / seconds, max(points[0][1], 0.0) / 2, len(samples), True)
    return LinkEstimate(8 / slope, max(intercept, 0.0) / 2, len(samples))


def check_sizes(sizes: Sequence[int], repeat: int) -> None:
    from ..runtime.peerprobe import MAX_REPEAT, MAX_SIZE_BYTES, MAX_SIZES

    if not 2 <= len(sizes) <= MAX_SIZES or any(not 0 <= s <= MAX_SIZE_BYTES for s in sizes):
        raise LinkError(f"probe sizes {list(sizes)}: give 2 to {MAX_SIZES} sizes of 0 to "
                        f"{MAX_SIZE_BYTES} bytes")
    if not 1 <= repeat <= MAX_REPEAT:
        raise LinkError(f"probe repeat {repeat}: give 1 to {MAX_REPEAT}")


def _channel(endpoint: str) -> grpc.Channel:
    return grpc.insecure_channel(endpoint, options=channel_options(64 << 20))


def probe_here(endpoint: str, sizes: Sequence[int] = SIZES, repeat: int = REPEAT
               ) -> LinkEstimate:
    """This host's link to the tier server at ``endpoint``, by timed Probe calls."""
    check_sizes(sizes, repeat)
    with _channel(endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        samples = []
        try:
            stub.Probe(pb.ProbeRequest(), timeout=TIMEOUT_S)  # connection set-up, not timed
            for _ in range(repeat):
                for size in sizes:
                    request = pb.ProbeRequest(padding=bytes(size))
                    t0 = time.perf_counter()
                    stub.Probe(request, timeout=TIMEOUT_S)
                    samples.append((size, time.perf_counter() - t0))
        except grpc.RpcError as exc:
            raise LinkError(f"probing {endpoint} failed ({exc.code().name}): "
                            f"{exc.details()}") from None
    return fit(samples)


def probe_peer(endpoint: str, peer: str, sizes: Sequence[int] = SIZES, repeat: int = REPEAT
               ) -> LinkEstimate:
    """The link from the tier server at ``endpoint`` to the one at ``peer``, timed by the
    first (ProbePeer)."""
    check_sizes(sizes, repeat)
    with _channel(endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        request = pb.ProbePeerRequest(address=peer, sizes=list(sizes), repeat=repeat)
        try:
            reply = stub.ProbePeer(request, timeout=TIMEOUT_S * (len(sizes) * repeat + 2))
        except grpc.RpcError as exc:
            raise LinkError(f"{endpoint} could not probe {peer} ({exc.code().name}): "
                            f"{exc.details()}") from None
    return fit([(s.bytes, s.seconds) for s in reply.samples])
