"""Running a prepared stage for one request: on the event loop when it is tiny, else on the
server's bounded pool of worker threads, where a request whose deadline passes while it waits
is dropped unrun (counted in ``Load.expired``)."""
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


async def compute(p: Prepared, values: dict[str, Any], where: str, deadline: float | None,
                  pool: concurrent.futures.Executor | None,
                  admission: Admission) -> tuple[dict[str, Any], float, float]:
    """The values stage ``p`` produced from ``values``, seconds queued and seconds computing;
    ``deadline`` is time.monotonic() by which the caller gives up."""
    stats, lock = admission.stats, admission.lock
    if p.inline:  # microseconds on the event loop: no queue, no worker thread
        started = time.perf_counter()
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
    queued = time.perf_counter()
    state: dict[str, Any] = {"started": None, "dropped": False}

    def work() -> dict[str, Any] | None:
        with lock:
            if state["dropped"]:  # the caller went away while this waited
                return None
            stats.waiting -= 1
            if deadline is not None and time.monotonic() >= deadline:
                state["dropped"] = True  # its deadline passed in the queue: do not run it
                stats.expired += 1
                return None
            state["started"] = time.perf_counter()
        with torch.inference_mode():
            return p.runner.run(values)

    def unqueue() -> None:
        with lock:
            if state["started"] is None and not state["dropped"]:
                state["dropped"] = True
                stats.waiting -= 1

    loop = asyncio.get_running_loop()
    try:
        produced = await loop.run_in_executor(pool, work)
    except asyncio.CancelledError:
        unqueue()
        raise
    except Exception as exc:
        unqueue()
        raise Abort(grpc.StatusCode.INTERNAL,
                    f"while executing {where}: {type(exc).__name__}: {exc}") from None
    if state["started"] is None:
        raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{where}: the request's deadline passed while it waited for a "
                    "worker; dropped without running it")
    compute_s = time.perf_counter() - state["started"]
    admission.record_service(compute_s)
    return produced, state["started"] - queued, compute_s
