"""A host's speed against a profile: the profile's seconds for the whole model over the host's
own median seconds for it (2 = twice as fast as where the profile was measured). Here, by
running the model in this process; on a tier server, by the compute time it reports for a
plan that puts everything on it (no link in the way)."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def local_speed(run: Callable[[], Any], profile: Any, repeat: int = 5) -> float:
    """``run()`` (the whole model, here) timed ``repeat`` times after one warm-up."""
    times = []
    with torch.no_grad():
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return sum(n.latency_s for n in profile.nodes) / statistics.median(times[1:])


def server_speed(model: str, profile: Any, endpoint: str, inputs: tuple, tier: str = "server",
                 repeat: int = 5, **client_kw: Any) -> float:
    """The tier server at ``endpoint`` running all of ``model``; ``client_kw`` go to the
    SplitClient (``fallback=False`` to have a failure raise rather than run here)."""
    from .client import SplitClient
    from .stageplan import StagePlan

    plan = StagePlan.from_assignment(model, {n.name: 1 for n in profile.nodes},
                                     ("device", tier))
    with SplitClient(plan, [endpoint], **client_kw) as client:
        seconds = [client.infer(*inputs)[1].servers[0].compute_s for _ in range(repeat + 1)]
    return sum(n.latency_s for n in profile.nodes) / statistics.median(seconds[1:])
