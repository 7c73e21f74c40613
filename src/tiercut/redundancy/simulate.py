"""A discrete-event simulator of n FCFS servers with Poisson arrivals, each request sent to k
of them chosen at random: copy 1 at arrival, the others ``issue_after_s`` later unless the
request is done; the other copies are cancelled when the first copy finishes (``cancel="finish"``,
a copy in service is stopped at once) or when the first copy starts service
(``cancel="start"``). A cancelled copy still queued costs nothing. ``cancel="queued"`` is what
tiercut's runtime does (InferRequest.cancel): at the first finish the copies still queued are
dropped, but a copy in service runs to its end (a stage's compute cannot be interrupted).
``cancel="never"``: every copy sent is served in full. In every mode a copy not yet issued
when the answer comes is never sent."""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Result:
    load: float          # arrival rate x mean service time / n (the load with k = 1)
    k: int
    p50: float
    p99: float
    mean: float
    busy: float          # fraction of server time spent serving (copies included)


CANCELS = ("finish", "start", "queued", "never")


def _check(n: int, k: int, load: float, issue_after_s: float, cancel: str) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not (isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"k must be an int in 1..n={n}, got {k!r}")
    if not (math.isfinite(load) and load > 0):
        raise ValueError(f"load must be a finite number > 0, got {load!r}")
    if not (math.isfinite(issue_after_s) and issue_after_s >= 0):
        raise ValueError(f"issue_after_s must be finite and >= 0, got {issue_after_s!r}")
    if cancel not in CANCELS:
        raise ValueError(f"cancel must be one of {', '.join(map(repr, CANCELS))}, got "
                         f"{cancel!r}")


def simulate(dist, n: int, k: int, load: float, requests: int = 100_000,
             issue_after_s: float = 0.0, cancel: str = "finish", seed: int = 0,
             warmup: float = 0.1) -> Result:
    """Latency of ``requests`` Poisson requests at ``load`` on n servers, each sent to k;
    ``dist`` has ``mean`` and ``sample(rng, size)``. The first ``warmup`` fraction of requests
    is left out of the percentiles."""
    _check(n, k, load, issue_after_s, cancel)
    rng = np.random.default_rng(seed)
    rate = load * n / dist.mean
    arrivals = np.cumsum(rng.exponential(1.0 / rate, requests)).tolist()
    service = dist.sample(rng, requests * k).tolist()
    picks = np.argsort(rng.random((requests, n)), axis=1)[:, :k].tolist()
    done = [math.inf] * requests           # finish time per request
    claimed = [False] * requests           # cancel="start": a copy has started
    queues: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # (request, copy) FIFO
    heads = [0] * n
    serving = [-1] * n                     # request in service per server, -1 idle
    version = [0] * n                      # invalidates the finish event of a stopped copy
    busy = 0.0
    started_at = [0.0] * n
    events: list[tuple[float, int, int, int, int]] = []  # (time, kind, a, b, version)
    # kinds: 0 finish(server), 1 copy(request, copy index)
    for r, t in enumerate(arrivals):
        for j in range(k):
            heapq.heappush(events, (t + (issue_after_s if j else 0.0), 1, r, j, 0))

    def start_next(s: int, now: float) -> None:
        q = queues[s]
        while heads[s] < len(q):
            r, j = q[heads[s]]
            heads[s] += 1
            if cancel != "never" and (done[r] < math.inf or (cancel == "start" and claimed[r])):
                continue
            claimed[r] = True
            serving[s] = r
            started_at[s] = now
            version[s] += 1
            heapq.heappush(events, (now + service[r * k + j], 0, s, r, version[s]))
            return
        serving[s] = -1
        if heads[s] > 1024:
            del q[:heads[s]]
            heads[s] = 0

    while events:
        now, kind, a, b, ver = heapq.heappop(events)
        if kind == 1:
            r, j = a, b
            if done[r] < math.inf or (cancel == "start" and claimed[r]):
                continue
            s = picks[r][j]
            queues[s].append((r, j))
            if serving[s] < 0:
                start_next(s, now)
            continue
        s, r = a, b
        if ver != version[s] or serving[s] != r:
            continue
        busy += now - started_at[s]
        done[r] = min(done[r], now)  # "never", "queued": a losing copy in service finishes later
        serving[s] = -1
        start_next(s, now)
        if cancel == "finish":
            for other in picks[r]:
                if other != s and serving[other] == r:  # stop the copy in service
                    busy += now - started_at[other]
                    version[other] += 1
                    serving[other] = -1
                    start_next(other, now)
    lat = np.asarray(done) - np.asarray(arrivals)
    lat = lat[int(warmup * requests):]
    span = arrivals[-1] - arrivals[0]
    return Result(load, k, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                  float(lat.mean()), busy / (n * span) if span > 0 else 0.0)


def sweep(dist, n: int, ks: Sequence[int], loads: Sequence[float], **kwargs) -> dict:
    """{k: [Result per load]}, same seed for every point (common random numbers)."""
    return {k: [simulate(dist, n, k, load, **kwargs) for load in loads] for k in ks}


def _unstable(res: Result) -> bool:
    return not math.isfinite(res.p99)


def break_even(dist, n: int, k: int, lo: float = 0.02, hi: float = 0.95, tol: float = 0.01,
               metric: str = "p99", **kwargs) -> float:
    """The load at which k copies stop beating k = 1 on ``metric`` (p50, p99 or mean), by
    bisection on [lo, hi]: ``lo`` when k copies do not win even at ``lo``, ``hi`` when they
    still win at ``hi``. Assumes one crossing (as Joshi & Soljanin show for these policies)."""
    if metric not in ("p50", "p99", "mean"):
        raise ValueError(f"metric must be p50, p99 or mean, got {metric!r}")

    def gain(load: float) -> float:
        one = getattr(simulate(dist, n, 1, load, **kwargs), metric)
        many = getattr(simulate(dist, n, k, load, **kwargs), metric)
        return one - many

    if gain(lo) <= 0:
        return lo
    if gain(hi) > 0:
        return hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if gain(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
