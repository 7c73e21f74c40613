"""Hand-overs while a stream runs: a device client streams requests (open loop, periodic) to
one of two edge servers, each a tier server in its own process behind its own emulated link
(a userspace ShapingProxy: token bucket plus one-way delay), and hands its edge stage over
between them every ``--every`` seconds, ``--hand-overs`` times, make before break
(``SplitClient.hand_over``: Prepare and warm the new server, move new requests, drain the old).

It counts every answer (none lost, none repeated: each request id answered once), checks each
against the whole model bit for bit (raw codec), and compares the p95 latency of the requests
sent within half a second either side of a switch with the p95 of a steady phase without
hand-overs before it (goal: within 1.2x).

Usage: python benchmarks/handover.py [--model squeezenet1_1] [--rate 100mbit] [--delay 5ms]
       [--requests-per-s 20] [--hand-overs 50] [--every 2] [--steady 20]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import numpy as np
import torch

from tiercut.graph.trace import trace
from tiercut.link.shaper import ShapingProxy
from tiercut.runtime.client import SplitClient
from tiercut.runtime.launch import spawn
from tiercut.runtime.stageplan import StagePlan
from tiercut.zoo import resolve

WINDOW_S = 0.5  # "the second around a hand-over": sent within this much either side


def device_cut(graph, within: float = 0.5) -> str:
    """The node with the smallest output in the first ``within`` of the model (inputs and
    the model's outputs aside): the device runs up to it, the edge the rest."""
    names = [n for n in graph.nodes if n not in graph.inputs and n not in graph.outputs]
    early = names[:max(1, int(len(names) * within))]
    return min(early, key=lambda n: graph.nodes[n].output_bytes)


async def stream(client: SplitClient, inputs, expected, rate: float, steady_s: float,
                 hosts: tuple[str, str], hand_overs: int, every_s: float):
    """Requests at ``rate`` per second from the start; after ``steady_s`` a hand-over every
    ``every_s``. Every request's (sent at, latency, host, fallback, request id, equal)."""
    loop_t0 = time.perf_counter()
    done: list[tuple] = []
    tasks: list[asyncio.Task] = []
    stop = asyncio.Event()

    async def one(i: int) -> None:
        t = time.perf_counter()
        out, m = await client.ainfer(*inputs[i % len(inputs)])
        same = torch.equal(out, expected[i % len(inputs)])
        done.append((t - loop_t0, m.total_s, m.endpoint, m.fallback, m.request_id, same))

    async def sender() -> None:
        i = 0
        while not stop.is_set():
            due = loop_t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
            i += 1

    send = asyncio.create_task(sender())
    await asyncio.sleep(steady_s)
    moves = []
    for j in range(hand_overs):
        started = time.perf_counter()
        moves.append(await client.ahand_over(hosts[(j + 1) % 2]))
        await asyncio.sleep(max(0.0, started + every_s - time.perf_counter()))
    stop.set()
    await send
    await asyncio.gather(*tasks)
    await client.aclose()
    return done, moves, loop_t0, len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--rate", default="100mbit", help="each edge server's link")
    ap.add_argument("--delay", default="5ms", help="one way, each edge server's link")
    ap.add_argument("--requests-per-s", type=float, default=20.0)
    ap.add_argument("--hand-overs", type=int, default=50)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between hand-overs")
    ap.add_argument("--steady", type=float, default=20.0, help="seconds before the first")
    args = ap.parse_args()
    torch.set_num_threads(1)
    entry = resolve(args.model)
    model = entry.build().eval()
    inputs = [entry.example_inputs(1) for _ in range(4)]
    with torch.inference_mode():
        expected = [model(*x) for x in inputs]
    graph = trace(model, *inputs[0])
    cut = device_cut(graph)
    order = list(graph.nodes)
    assignment = {n: 0 if order.index(n) <= order.index(cut) else 1 for n in order}
    plan = StagePlan.from_assignment(args.model, assignment, ("device", "edge"))
    print(f"{args.model}: device runs up to {cut} ({graph.nodes[cut].output_bytes} bytes "
          f"cross), the edge the rest; two edge servers (1 thread each, own processes), each "
          f"behind a ShapingProxy at {args.rate}, {args.delay} one way; "
          f"{args.requests_per_s:g} requests/s; {args.steady:g} s steady, then "
          f"{args.hand_overs} hand-overs every {args.every:g} s", flush=True)
    with spawn([args.model]) as a, spawn([args.model]) as b, contextlib.ExitStack() as stack:
        via = []
        for server in (a, b):
            host, port = server.endpoint.rsplit(":", 1)
            proxy = stack.enter_context(ShapingProxy.in_thread(
                to=(host, int(port)), rate_bps=args.rate, delay_s=args.delay))
            via.append(f"127.0.0.1:{proxy.port}")
        with SplitClient(plan, [via[0]]) as client:
            client.prepare()
            for x in inputs:  # the first runs pay one-off costs on both sides
                client.infer(*x)
            done, moves, t0, sent = asyncio.run(stream(
                client, inputs, expected, args.requests_per_s, args.steady, tuple(via),
                args.hand_overs, args.every))
    report(done, moves, t0, sent, args.steady)


def report(done, moves, t0: float, sent: int, steady_s: float) -> None:
    ids = [d[4] for d in done]
    lost = sent - len(done)
    repeated = len(ids) - len(set(ids))
    wrong = sum(1 for d in done if not d[5])
    fallbacks = sum(1 for d in done if d[3])
    at = np.array([d[0] for d in done])  # sent at, seconds from the stream's start
    lat = np.array([d[1] for d in done])
    switches = np.array([m.switched_at for m in moves]) - t0
    steady = lat[at < steady_s - WINDOW_S]
    near = np.zeros(len(at), bool)
    for s in switches:
        near |= np.abs(at - s) <= WINDOW_S
    around = lat[near]
    p95_steady, p95_around = np.percentile(steady, 95), np.percentile(around, 95)
    print(f"\nrequests sent {sent}, answered {len(done)}, lost {lost}, repeated {repeated}, "
          f"wrong answers {wrong}, finished on the device {fallbacks}")
    print(f"hand-overs {len(moves)}: prepare median {np.median([m.prepare_s for m in moves]) * 1e3:.0f} ms, "
          f"warm median {np.median([m.warm_s for m in moves]) * 1e3:.0f} ms, in flight at the "
          f"switch median {np.median([m.in_flight for m in moves]):.0f}, all drained "
          f"{all(m.drained for m in moves)}, drain median "
          f"{np.median([m.drain_s for m in moves]) * 1e3:.0f} ms")
    print(f"{'requests':<34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for label, xs in (("steady (no hand-over)", steady),
                      (f"within {WINDOW_S:g} s of a switch", around),
                      ("hand-over phase, all", lat[at >= steady_s])):
        print(f"{label:<34} {len(xs):>5} {np.percentile(xs, 50) * 1e3:8.1f} "
              f"{np.percentile(xs, 95) * 1e3:8.1f} {np.percentile(xs, 99) * 1e3:8.1f}")
    print(f"p95 around a switch / steady p95 = {p95_around / p95_steady:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
