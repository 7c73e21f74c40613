"""A hedged request: the remote part races the rest of the model on the device, and the first
to finish answers. The loser is stopped: the remote call cancelled, the device's run between
two of its nodes (``_StoppableRun``)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Coroutine, Mapping, Sequence

import torch
import torch.fx as fx

from .fallback import Unreachable
from .measurement import Hop


async def race(remote_part: Coroutine[Any, Any, tuple], pool: concurrent.futures.Executor,
               rest: Sequence[Any], env: Mapping[str, Any], after_s: float, fallback: bool,
               tiers: Sequence[str], sent: int) -> tuple[tuple | None, tuple | None]:
    """The remote part and, after ``after_s`` without an answer, the ``rest`` of the model's
    stages on the device: (remote result, None), or (None, (values, device seconds, the first
    hop so far, why, failovers)) when the device answers (first, or because no host could).
    ``fallback``: whether an unreachable remote part may be answered by the device."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    t = time.perf_counter()
    remote = loop.create_task(remote_part)
    if after_s > 0:
        try:
            await asyncio.wait((remote,), timeout=after_s)
        except BaseException:  # (the request itself cancelled)
            remote.cancel()
            raise
        if remote.done():  # in time, or failed: as an unhedged request (fallback and all)
            return remote.result(), None
    local = loop.run_in_executor(pool, _run_rest, rest, dict(env), stop)
    try:
        await asyncio.wait((remote, local), return_when=asyncio.FIRST_COMPLETED)
        if remote.done() and isinstance(remote.exception(), Unreachable) and fallback:
            await asyncio.wait((local,))  # the device's run is the fallback, under way
        elif not remote.done() and local.exception() is not None:
            await asyncio.wait((remote,))  # the device's run failed: the remote answers
    finally:
        stop.set()
        remote.cancel()
        local.add_done_callback(_consume)  # a stopped run ends in _Stopped, unread
    why, failovers = "hedged: the device finished first", 0
    if remote.done() and not remote.cancelled():
        exc = remote.exception()
        if exc is None:
            return remote.result(), None
        if not isinstance(exc, Unreachable) or not fallback or local.exception() is not None:
            raise exc  # (an unreachable host without fallback: ainfer says so)
        why, failovers = f"hedged, and {exc.reason}", exc.failovers
    seconds = time.perf_counter() - t
    return None, (local.result(), seconds, (Hop(tiers[0], tiers[1], sent, 0, seconds),),
                  why, failovers)


class _Stopped(Exception):
    """A hedge's device run stopped because the remote answer came first."""


class _StoppableRun(fx.Interpreter):
    """A stage's graph run node by node (the same calls its module makes, so the same
    values), checking ``stop`` before each node."""

    def __init__(self, module: fx.GraphModule, stop: threading.Event):
        super().__init__(module)
        self.stop = stop

    def run_node(self, n: fx.Node) -> Any:
        if self.stop.is_set():
            raise _Stopped()
        return super().run_node(n)


def _run_rest(stages: Sequence[Any], env: dict[str, Any],
             stop: threading.Event) -> dict[str, Any]:
    """Stages 1.. on the device, until done or ``stop``; the values they produced."""
    produced: dict[str, Any] = {}
    with torch.inference_mode():
        for stage in stages:
            if not stage.nodes:
                continue
            results = _StoppableRun(stage.module, stop).run(*(env[n] for n in stage.inputs))
            values = dict(zip(stage.outputs, results))
            env.update(values)
            produced.update(values)
    return produced


def _consume(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # read, so that a stopped run is not reported as unhandled
