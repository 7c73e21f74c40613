"""How a request's remote part finds a server of the first tier: the tier's hosts in order,
skipping one that failed within ``retry_after_s``, moving on when one is unreachable,
overloaded (RESOURCE_EXHAUSTED) or late; re-preparing once when a server forgot the plan; and,
when a hand-over (handover.py) brought the tier other hosts while the request was under way,
those too before the request finishes on the device; with redundancy (redundant.py), copies to k
of the hosts at once. Each request waiting on a host is
recorded in the client's ``in flight`` map, which a hand-over's drain watches."""
from __future__ import annotations

import time
from typing import Any

import grpc

from . import tiercut_pb2 as pb
from . import wire
from .fallback import FALLBACK_CODES, RemoteError, Unreachable
from .measurement import hops_from
from .redundant import send_redundant
from .stream import CallFailed


async def remote_part(client: Any, request: pb.InferRequest, sent: int,
                      t0: float) -> tuple:
    """Send the rest to the first tier: its hosts in order, skipping those that failed
    recently; Unreachable (with the last host's reason) when none answers."""
    lay = client.layout
    hosts = client.hosts[0]
    up = [h for h in hosts if not client._is_down(h)]
    if not up:
        raise Unreachable(f"{hosts[0]} failed recently; retrying after "
                          f"{client.retry_after_s} s", hosts[0])
    last: Unreachable | None = None
    failovers = 0
    reprepared = False
    queue, tried = list(up), set(up)
    while queue or _handed_over(client, tried):
        if not queue:  # a hand-over brought other hosts since: try those too
            queue = [h for h in client.hosts[0] if h not in tried and not client._is_down(h)]
            tried.update(queue)
            continue
        host = queue[0]
        await client.aprepare()
        if (1, host) not in client._ready:  # its Prepare just failed: the next one
            queue.pop(0)
            failovers += 1
            continue
        timeout = client.host_timeout_s
        if client.deadline_s is not None:
            left = client.deadline_s - (time.perf_counter() - t0)
            if left <= 0:
                raise last or Unreachable(f"deadline of {client.deadline_s} s passed "
                                          f"before sending to {host}", host)
            timeout = left if timeout is None else min(timeout, left)
        group = _copies_to(client, host, queue)
        if group[0] != host:  # the group leads the queue, so a failure below pops it first
            queue.remove(group[0])
            queue.insert(0, group[0])
            host = group[0]
        t = time.perf_counter()
        client._in_flight.update({f"{request.request_id}@{h}": h for h in group})
        try:
            if len(group) > 1:
                try:
                    reply, host, _ = await send_redundant(client.stream_to, request, group,
                                                          len(group), client.redundant_after_s,
                                                          timeout)
                except CallFailed as exc:  # every copy failed: each host as the last one did
                    for other in group:
                        if other != host:
                            _note_failure(client, other, exc)
                            queue.remove(other)
                            failovers += 1
                    raise
            else:
                reply = await client._host(host)[2].infer(request, timeout)
        except CallFailed as exc:
            code = exc.code
            if code == grpc.StatusCode.NOT_FOUND and "unknown plan id" in exc.details \
                    and not reprepared:
                reprepared = True  # a server restarted and forgot the plan: prepare again
                client._ready.clear()
                continue
            if code not in FALLBACK_CODES:
                raise RemoteError(code, exc.details, host) from None
            _note_failure(client, host, exc)
            last = Unreachable(f"{host}: {code.name}: {exc.details}", host)
            queue.pop(0)
            failovers += 1
            continue
        finally:
            for h in group:
                client._in_flight.pop(f"{request.request_id}@{h}", None)
        rpc_s = time.perf_counter() - t
        t = time.perf_counter()
        try:
            back, returned = wire.decode_values(reply.outputs, client.limits)
            wire.check_values(back, client._expected_back, lay.signatures,
                              f"reply from {host}")
        except wire.WireError as exc:
            raise RemoteError(grpc.StatusCode.INTERNAL, str(exc), host) from None
        decode_s = time.perf_counter() - t
        servers = tuple(wire.timing_from_pb(m) for m in reply.timings)
        client.last_load[host] = wire.load_from_pb(reply.load)
        return (back, decode_s, rpc_s,
                hops_from(client.plan.tiers, sent, returned, rpc_s, servers), servers, host,
                failovers)
    if last is None:
        last = Unreachable(f"no host of tier {client.plan.tiers[1]!r} could be prepared",
                           hosts[0])
    last.failovers = failovers
    raise last


def _copies_to(client: Any, host: str, queue: list[str]) -> list[str]:
    """``host`` alone, or with redundancy k, k of the prepared hosts in ``queue`` at random
    (so that copies spread over all of them, as Joshi and Soljanin's k of n)."""
    if client.redundant < 2:
        return [host]
    ready = [h for h in queue if (1, h) in client._ready]
    if len(ready) < 2:
        return [host]
    return client._rng.sample(ready, min(client.redundant, len(ready)))


def _note_failure(client: Any, host: str, exc: CallFailed) -> None:
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        client._mark_down(host)
    elif exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and exc.load is not None:
        client.last_load[host] = exc.load


def _handed_over(client: Any, tried: set[str]) -> bool:
    return any(h not in tried and not client._is_down(h) for h in client.hosts[0])
