"""A bench: many requests with a few in flight, summed up in a ``BenchResult`` (throughput and
latency percentiles, with every request's Measurement)."""
from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

from .measurement import Measurement


@dataclass(frozen=True)
class BenchResult:
    requests: int
    concurrency: int
    seconds: float
    throughput: float  # requests per second
    latency_s: Mapping[str, float]  # mean, p50, p90, p99, max
    fallbacks: int
    measurements: tuple[Measurement, ...] = field(default=(), repr=False)


async def run_bench(ainfer: Callable[..., Awaitable[tuple[Any, Measurement]]],
                    args: Sequence[Any], requests: int, concurrency: int, warmup: int,
                    progress: Callable[[int, int], None] | None = None) -> BenchResult:
    """``warmup`` calls of ``ainfer(*args)``, then ``requests`` with ``concurrency`` in flight."""
    for _ in range(warmup):
        await ainfer(*args)
    results: list[Measurement] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            next_index += 1
            results.append((await ainfer(*args))[1])
            if progress:
                progress(len(results), requests)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    seconds = time.perf_counter() - t
    lat = sorted(m.total_s for m in results)
    return BenchResult(requests, concurrency, seconds, requests / seconds,
                       {"mean": statistics.fmean(lat), "p50": _pct(lat, 50),
                        "p90": _pct(lat, 90), "p99": _pct(lat, 99), "max": lat[-1]},
                       sum(m.fallback for m in results), tuple(results))


def _pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
