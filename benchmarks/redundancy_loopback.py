"""Redundant requests measured for real: n tier servers in their own processes (1 thread
each) on this machine's loopback, Poisson requests at several rates, each request's edge part
sent to k of the n servers (``SplitClient(redundant=k)``), the first answer taken. p50/p99
latency against the offered load, per k, and the lowest rate measured at which k copies' p99
is worse than one copy's (the break-even, on this grid).

The servers share this machine's cores. A losing copy is cancelled in-band as soon as the
first answer comes (InferRequest.cancel, redundant.py): its server drops it unrun if it is
still queued, and finishes it if it has started, so a copy costs real load only once started.
The second table gives, per point, each server's copies computed and copies cancelled unrun
(from its Load). Every answer is checked against the whole model bit for bit.

Usage: python benchmarks/redundancy_loopback.py [--model squeezenet1_1] [--servers 3]
       [--rates 4,8,16,32] [--ks 1,2,3] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib

import grpc
import numpy as np
import torch

from handover import device_cut
from tiercut.graph.trace import trace
from tiercut.runtime.client import SplitClient
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
from tiercut.runtime.launch import spawn
from tiercut.runtime.stageplan import StagePlan
from tiercut.zoo import resolve


async def poisson(client: SplitClient, x, expected, rate: float, seconds: float, seed: int):
    """Requests at Poisson times for ``seconds``; each one's latency, and the wrong answers."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 2) + 10)
    times = np.cumsum(gaps)
    times = times[times < seconds]
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = []

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        out, m = await client.ainfer(*x)
        results.append((m.total_s, torch.equal(out, expected), m.fallback))

    await asyncio.gather(*(one(t) for t in times))
    return results


def counts(stubs) -> list[tuple[int, int]]:
    """Each server's (requests served, requests cancelled unrun) since it started."""
    loads = [s.Load(pb.LoadRequest(), timeout=10).load for s in stubs]
    return [(load.served, load.cancelled) for load in loads]


async def sweep(client: SplitClient, x, expected, rates, seconds: float, stubs):
    """``poisson`` at each rate, on one event loop (the client's channels belong to it); with
    each point, every server's (served, cancelled) during it."""
    out = []
    for i, rate in enumerate(rates):
        before = counts(stubs)
        res = await poisson(client, x, expected, rate, seconds, i)
        await asyncio.sleep(0.3)  # the last cancels arrive
        out.append((res, [(s1 - s0, c1 - c0) for (s0, c0), (s1, c1)
                          in zip(before, counts(stubs))]))
    await client.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--rates", default="4,8,16,32", help="requests per second")
    ap.add_argument("--ks", default="1,2,3")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    entry = resolve(args.model)
    model = entry.build().eval()
    x = entry.example_inputs(1)
    with torch.inference_mode():
        expected = model(*x)
    graph = trace(model, *x)
    cut = device_cut(graph)
    order = list(graph.nodes)
    plan = StagePlan.from_assignment(
        args.model, {n: 0 if order.index(n) <= order.index(cut) else 1 for n in order},
        ("device", "edge"))
    rates = [float(r) for r in args.rates.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    print(f"{args.model}: device up to {cut}, the edge part on {args.servers} tier servers "
          f"(own processes, 1 thread each, loopback, this machine's 2 cores shared); Poisson "
          f"arrivals, {args.seconds:g} s per point", flush=True)
    table: dict[tuple[int, float], tuple[float, float, int]] = {}
    per_server: dict[tuple[int, float], list[tuple[int, int]]] = {}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(spawn([args.model])) for _ in range(args.servers)]
        hosts = [s.endpoint for s in servers]
        channels = [stack.enter_context(grpc.insecure_channel(h)) for h in hosts]
        stubs = [pb_grpc.TierServerStub(c) for c in channels]
        for k in ks:
            with SplitClient(plan, [hosts], redundant=k) as client:
                client.prepare()
                for _ in range(5):
                    client.infer(*x)
                for rate, (res, done) in zip(rates, asyncio.run(sweep(
                        client, x, expected, rates, args.seconds, stubs))):
                    per_server[k, rate] = done
                    lat = np.array([r[0] for r in res])
                    wrong = sum(1 for r in res if not r[1])
                    fell = sum(1 for r in res if r[2])
                    table[k, rate] = (np.percentile(lat, 50), np.percentile(lat, 99), len(res))
                    print(f"  k={k} rate {rate:g}/s: {len(res)} requests, p50 "
                          f"{table[k, rate][0] * 1e3:.1f} ms, p99 {table[k, rate][1] * 1e3:.1f}"
                          f" ms, wrong {wrong}, on the device {fell}; per server computed/"
                          f"cancelled {' '.join(f'{s}/{c}' for s, c in done)}", flush=True)
    print(f"\n{'rate/s':>7} " + " ".join(f"{'k=%d p50' % k:>9} {'k=%d p99' % k:>9}" for k in ks))
    for rate in rates:
        print(f"{rate:7g} " + " ".join(f"{table[k, rate][0] * 1e3:9.1f} "
                                       f"{table[k, rate][1] * 1e3:9.1f}" for k in ks))
    print("\nper server: copies computed / cancelled unrun, during each point")
    print(f"{'rate/s':>7} " + " ".join(f"{'k=%d' % k:>{8 * args.servers}}" for k in ks))
    for rate in rates:
        print(f"{rate:7g} " + " ".join(
            "".join(f"{f'{s}/{c}':>8}" for s, c in per_server[k, rate]) for k in ks))
    for k in ks[1:]:
        worse = [r for r in rates if table[k, r][1] > table[ks[0], r][1]]
        print(f"k={k}: p99 worse than k={ks[0]} from "
              + (f"{worse[0]:g} requests/s" if worse else "no rate measured"))


if __name__ == "__main__":
    main()
