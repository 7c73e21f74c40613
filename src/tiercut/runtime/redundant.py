"""Redundant requests: one request's remote part sent to k of the first tier's hosts, the
first answer taken and the other copies given up on (Joshi & Soljanin's k-of-n redundancy).

``SplitClient(redundant=k, redundant_after_s=d)``: each request picks k of the tier's prepared
hosts at random (so copies spread over all n), sends the first copy at once and the others
``d`` seconds later unless an answer has come (d = 0: all at once; d > 0: a backup request
that costs nothing when the first host is on time). The first OK answer wins; a copy that
fails (unreachable, overloaded, late) leaves the others racing; only when every copy fails
does the request go on to the tier's other hosts, then the device.

Cancel time: on the first answer. A copy not yet issued is never sent; a copy already sent is
cancelled in-band on its stream (``InferStream.cancel``, ``InferRequest.cancel``): its server
drops it unrun if it is still waiting for a worker (answered CANCELLED, counted in
``Load.cancelled``), and lets it finish if it is already computing (torch cannot be
interrupted). Either late answer is dropped on arrival. So a losing copy costs its server
nothing when it was still queued, and its whole compute when it had started: between the
simulator's cancel="never" and cancel="finish" (which stops a copy in service too). With
d = 0 on servers equally loaded, copies tend to start at about the same time, and few are
still queued when the first answer comes (benchmarks/redundancy_loopback.py counts the copies
cancelled per server). The copies of a request that failed or ran out of time are cancelled
the same way.

``send_redundant`` is the race itself, over any streams (``stream_for(host)``): k of n hosts,
each copy after the first ``issue_after_s`` after the one before, each with its own request
id; the client's route (route.py) and benchmarks/redundancy.py use it.
"""
from __future__ import annotations

import asyncio
import math
import random
from typing import Any, Callable, Sequence

import grpc

from . import tiercut_pb2 as pb
from .stream import CallFailed, InferStream


def check_redundancy(k: Any, after_s: Any) -> tuple[int, float]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"redundant {k!r} must be a whole number of copies >= 1 (1: none)")
    if isinstance(after_s, bool) or not isinstance(after_s, (int, float)) \
            or not (after_s >= 0 and math.isfinite(after_s)):
        raise ValueError(f"redundant_after_s {after_s!r} must be a number of seconds >= 0 "
                         "(0: all copies at once)")
    return k, float(after_s)


def _check_send(hosts: Sequence[str], k: Any, issue_after_s: Any) -> None:
    if not hosts:
        raise ValueError("hosts is empty: give at least one host that holds the stage")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(hosts):
        raise ValueError(f"k={k!r}: accepted is an int with 1 <= k <= len(hosts)={len(hosts)}")
    if isinstance(issue_after_s, bool) or not isinstance(issue_after_s, (int, float)) or not (
            math.isfinite(issue_after_s) and issue_after_s >= 0):
        raise ValueError(f"issue_after_s={issue_after_s!r}: accepted is a finite number >= 0 "
                         "(0 = all copies at once)")


def _copy(request: pb.InferRequest, i: int) -> pb.InferRequest:
    """Copy i of ``request``: each copy carries its own request id (copy 0 the original)."""
    out = pb.InferRequest()
    out.CopyFrom(request)
    if i:
        out.request_id = f"{request.request_id}#r{i}"
    return out


async def send_redundant(stream_for: Callable[[str], InferStream], request: pb.InferRequest,
                         hosts: Sequence[str], k: int, issue_after_s: float,
                         timeout: float | None = None,
                         rng: random.Random | None = None) -> tuple[pb.InferReply, str, int]:
    """``request`` to k of ``hosts`` (a random k by ``rng``; the first k in order when None),
    copy 1 at once and each further one ``issue_after_s`` later unless answered (at once when
    every copy so far failed): the first OK reply, the host that gave it, and the copies
    issued. The others are cancelled, in-band on their streams too (InferStream.cancel). All
    failed: CallFailed with the last status."""
    _check_send(hosts, k, issue_after_s)
    chosen = (list(hosts) if rng is None else rng.sample(list(hosts), len(hosts)))[:k]
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    tasks: dict[asyncio.Task, tuple[str, InferStream, str]] = {}  # host, stream, copy's id
    last: CallFailed | None = None
    issued = 0
    next_at = loop.time()

    def issue() -> None:
        nonlocal issued, next_at
        left = None if deadline is None else max(1e-3, deadline - loop.time())
        copy, stream = _copy(request, issued), stream_for(chosen[issued])
        task = loop.create_task(stream.infer(copy, left))
        tasks[task] = chosen[issued], stream, copy.request_id
        issued += 1
        next_at = loop.time() + issue_after_s

    try:
        while True:
            while issued < k and (not tasks or loop.time() >= next_at):
                issue()
            if not tasks:
                break
            wait = None if issued >= k else max(0.0, next_at - loop.time())
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = left if wait is None else min(wait, left)
            finished, _ = await asyncio.wait(tasks, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                host = tasks.pop(task)[0]
                try:
                    return task.result(), host, issued
                except CallFailed as exc:
                    last = exc
        raise last or CallFailed(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"no copy answered within {timeout} s")
    finally:
        for task, (_, stream, rid) in tasks.items():
            stream.cancel(rid)  # the server drops it if still queued (before the task goes)
            task.cancel()
