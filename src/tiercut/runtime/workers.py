"""Running a prepared stage for one request: on the event loop when it is tiny, else on the
server's bounded pool of worker threads, where a request is dropped unrun when its deadline
passes while it waits (counted in ``Load.expired``) or when its sender cancels it first
(``Ticket.cancel``, an InferStream cancel; counted in ``Load.cancelled``). Once a worker has
started a stage it runs to the end: torch cannot be interrupted."""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import grpc
import torch

from .admission import Admission
from .stagecache import Prepared
from .status import Abort


class Ticket:
    """One request's place in the line for a worker, which its sender may cancel until the
    stage starts. States change under ``admission.lock`` (workers read them too)."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self.started: float | None = None  # perf_counter() when the stage started
        self.queued = False  # counted in Load.queue_depth
        self.dropped = False  # taken out of the line unrun (deadline, caller gone, cancel)
        self.cancelled = False
        self.future: asyncio.Future | None = None  # the worker's, while it waits

    def cancel(self) -> bool:
        """Drop the request unrun unless it has started (or ended): True when dropped, and
        ``compute`` then raises CANCELLED; False when it computes or is done already. Call on
        the event loop that runs ``compute``."""
        with self._admission.lock:
            if self.started is not None or self.dropped or self.cancelled:
                return False
            self.cancelled = True
            self._admission.stats.cancelled += 1
            self._unqueue()
        if self.future is not None:  # wakes compute at once; a pool skips a cancelled item
            self.future.cancel()
        return True

    def _unqueue(self) -> None:
        """Under the lock: out of the line, unrun."""
        self.dropped = True
        if self.queued:
            self.queued = False
            self._admission.stats.waiting -= 1


def _cancelled(where: str) -> Abort:
    return Abort(grpc.StatusCode.CANCELLED, f"{where}: the sender cancelled the request before "
                 "it started; dropped without running it")


async def compute(p: Prepared, values: dict[str, Any], where: str, deadline: float | None,
                  pool: concurrent.futures.Executor | None, admission: Admission,
                  ticket: Ticket | None = None) -> tuple[dict[str, Any], float, float]:
    """The values stage ``p`` produced from ``values``, seconds queued and seconds computing;
    ``deadline`` is time.monotonic() by which the caller gives up; ``ticket``, when given, is
    how the caller may cancel the request until it starts."""
    stats, lock = admission.stats, admission.lock
    t = ticket or Ticket(admission)
    if t.cancelled:  # cancelled before it got here
        raise _cancelled(where)
    if p.inline:  # microseconds on the event loop: no queue, no worker thread
        started = t.started = time.perf_counter()
        try:
            with torch.inference_mode():
                produced = p.runner.run(values)
        except Exception as exc:
            raise Abort(grpc.StatusCode.INTERNAL,
                        f"while executing {where}: {type(exc).__name__}: {exc}") from None
        compute_s = time.perf_counter() - started
        admission.record_service(compute_s)
        return produced, 0.0, compute_s
    with lock:
        stats.waiting += 1
        t.queued = True
    queued = time.perf_counter()

    def work() -> dict[str, Any] | None:
        with lock:
            if t.dropped:  # the caller went away, or cancelled it, while this waited
                return None
            t.queued = False
            stats.waiting -= 1
            if deadline is not None and time.monotonic() >= deadline:
                t.dropped = True  # its deadline passed in the queue: do not run it
                stats.expired += 1
                return None
            t.started = time.perf_counter()
        with torch.inference_mode():
            return p.runner.run(values)

    def unqueue() -> None:
        with lock:
            if t.started is None and not t.dropped:
                t._unqueue()

    t.future = asyncio.get_running_loop().run_in_executor(pool, work)
    try:
        produced = await t.future
    except asyncio.CancelledError:
        if t.cancelled and not asyncio.current_task().cancelling():  # by Ticket.cancel
            raise _cancelled(where) from None
        unqueue()
        raise
    except Exception as exc:
        unqueue()
        raise Abort(grpc.StatusCode.INTERNAL,
                    f"while executing {where}: {type(exc).__name__}: {exc}") from None
    finally:
        t.future = None
    if t.started is None:
        if t.cancelled:
            raise _cancelled(where)
        raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{where}: the request's deadline passed while it waited for a "
                    "worker; dropped without running it")
    compute_s = time.perf_counter() - t.started
    admission.record_service(compute_s)
    return produced, t.started - queued, compute_s


class Tickets:
    """The requests of one InferStream not yet answered, by request id, for its cancels (a
    repeated id: the latest one)."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._by_id: dict[str, Ticket] = {}

    def add(self, request_id: str) -> Ticket:
        ticket = self._by_id[request_id] = Ticket(self._admission)
        return ticket

    def done(self, request_id: str, ticket: Ticket) -> None:
        if self._by_id.get(request_id) is ticket:
            del self._by_id[request_id]

    def cancel(self, request_id: str) -> bool:
        """Ticket.cancel for that request; False for an id not in flight (ignored)."""
        ticket = self._by_id.get(request_id)
        return ticket is not None and ticket.cancel()
