"""Redundant requests (Joshi & Soljanin), simulated and measured.

(a) SIMULATED: p99 latency vs load for k = 1, 2, 3 copies on n servers, for service-time
    distributions fitted to a MEASURED service time (a real tier server in its own process,
    1 thread, on loopback, timed one request at a time by the client: stage compute plus the
    loopback RPC). The measured fit is whatever it is (here near-deterministic: log-concave);
    the log-convex case is a hyperexponential with the measured mean and an ASSUMED squared
    coefficient of variation (--scv), stated as such. break_even(k) per distribution.
(b) MEASURED on loopback: n real tier servers (separate processes, 1 thread each), Poisson
    requests at several loads, each sent with send_redundant to k of them; p99 measured next
    to the p99 the simulator gives for the measured fit at the same load. The servers share
    this machine's cores with the client; a losing copy still queued is cancelled in-band,
    one already computing runs to its end (the simulator's cancel="queued").

Usage: python benchmarks/redundancy.py [--model digits_cnn] [--servers 3] [--samples 300]
       [--loads 0.05,0.1,0.2] [--ks 1,2,3] [--seconds 4] [--scv 4]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

import numpy as np
import torch

from tiercut.redundancy import (Empirical, break_even, fit_hyperexponential,
                                fit_shifted_exponential,
                                log_concavity, simulate)
from tiercut.runtime import tiercut_pb2 as pb
from tiercut.runtime import wire
from tiercut.runtime.hosts import Channels
from tiercut.runtime.launch import spawn
from tiercut.runtime.preparing import prepare_request
from tiercut.runtime.redundant import send_redundant
from tiercut.runtime.stream import CallFailed
from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph
from tiercut.runtime.transport import MAX_MESSAGE_BYTES


def _plan_and_request(model: str):
    graph = model_graph(model)
    plan = StagePlan.from_assignment(model, {n.name: 1 for n in graph.compute_nodes},
                                     ("device", "edge"))
    request = pb.InferRequest(plan_id=plan.plan_id, stage=1, request_id="x", codec="raw")
    wire.encode_values(dict(zip(graph.inputs, example_inputs(plan))), "raw", request.values)
    return plan, request


async def _measure(hosts, plan, request, samples, loads, ks, seconds, mean_hint):
    channels = Channels(None, (), MAX_MESSAGE_BYTES)
    stream = lambda h: channels.get(h)[2]  # noqa: E731
    try:
        prep = prepare_request(plan, plan.to_json(), 1, (), "raw")
        for h in hosts:
            await channels.get(h)[1].Prepare(prep, timeout=60)
        times = []
        for i in range(samples + 10):  # one at a time, round robin: the service time
            t = time.perf_counter()
            await stream(hosts[i % len(hosts)]).infer(request, 30)
            if i >= 10:
                times.append(time.perf_counter() - t)
        mean = float(np.mean(times)) if mean_hint is None else mean_hint
        rows = []
        rng = random.Random(0)
        for load in loads:
            rate = load * len(hosts) / mean
            for k in ks:
                lat: list[float] = []
                failed: list[str] = []
                tasks = []
                n = 0

                async def one(rid: str) -> None:
                    r = pb.InferRequest()
                    r.CopyFrom(request)
                    r.request_id = rid
                    t = time.perf_counter()
                    try:
                        await send_redundant(stream, r, hosts, k, 0.0, 60, rng)
                    except CallFailed:  # shed by every copy's server: counted, not timed
                        failed.append(rid)
                        return
                    lat.append(time.perf_counter() - t)

                start = time.perf_counter()
                next_t = start
                while next_t - start < seconds:
                    await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
                    tasks.append(asyncio.ensure_future(one(f"L{load}k{k}n{n}")))
                    n += 1
                    next_t += rng.expovariate(rate)
                await asyncio.gather(*tasks)
                rows.append((load, k, n, len(failed), float(np.percentile(lat, 50)),
                             float(np.percentile(lat, 99))))
        return np.asarray(times), rows
    finally:
        await channels.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--loads", default="0.05,0.1,0.2")
    ap.add_argument("--ks", default="1,2,3")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--scv", type=float, default=4.0)
    ap.add_argument("--requests", type=int, default=30_000, help="simulated per point")
    a = ap.parse_args()
    torch.set_num_threads(1)
    loads = [float(x) for x in a.loads.split(",")]
    ks = [int(x) for x in a.ks.split(",")]
    plan, request = _plan_and_request(a.model)
    servers = [spawn([a.model], threads=1) for _ in range(a.servers)]
    try:
        times, rows = asyncio.run(_measure([s.endpoint for s in servers], plan, request,
                                           a.samples, loads, ks, a.seconds, None))
    finally:
        for s in servers:
            s.terminate()
    n = a.servers
    fit = fit_shifted_exponential(times)
    hyper = fit_hyperexponential(mean=float(times.mean()), scv=a.scv)
    print(f"MEASURED service time of {a.model} (1 thread, loopback, {len(times)} requests): "
          f"mean {times.mean() * 1e3:.2f} ms, p50 {np.percentile(times, 50) * 1e3:.2f} ms, "
          f"p99 {np.percentile(times, 99) * 1e3:.2f} ms, scv {times.var() / times.mean()**2:.3f},"
          f" log-hazard trend {log_concavity(times):+.2f} (>0 log-concave)")
    print(f"fit (MLE) shifted exponential: shift {fit.shift * 1e3:.2f} ms + Exp(mean "
          f"{1e3 / fit.rate:.2f} ms)")
    print(f"log-convex case: hyperexponential with the measured mean and ASSUMED scv {a.scv}: "
          f"p={hyper.p:.3f}, means {1e3 / hyper.rate1:.2f} / {1e3 / hyper.rate2:.2f} ms")
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    for name, dist in (("shifted exp fitted to measured (log-concave)", fit),
                       (f"hyperexp, measured mean, scv {a.scv} (log-convex)", hyper)):
        print(f"\n(a) SIMULATED p99 [ms], n={n}, cancel on first finish, {name}")
        print("load  " + "".join(f"{g:>9.1f}" for g in grid))
        for k in (1, 2, 3)[:n]:
            ps = [simulate(dist, n, k, g, requests=a.requests).p99 * 1e3 for g in grid]
            print(f"k={k}   " + "".join(f"{p:>9.2f}" if p < 1e6 else f"{'inf':>9}"
                                        for p in ps))
        for k in (2, 3)[:n - 1]:
            b = break_even(dist, n, k, requests=a.requests // 2)
            say = ("> 0.95 (k copies win up to the highest load searched)" if b >= 0.95 else
                   "< 0.02 (k copies never win)" if b <= 0.02 else f"{b:.3f}")
            print(f"break_even(k={k}) = {say}")
    print(f"\n(b) loopback: {n} tier servers (processes, 1 thread each), Poisson, "
          f"{a.seconds:.0f} s per point; p99 MEASURED vs SIMULATED (shifted-exp fit)")
    print(f"{'load':>5} {'k':>2} {'requests':>8} {'p50 meas':>9} {'p99 meas':>9} "
          f"{'p99 sim':>9} {'sim queued':>10} {'sim never':>9} {'emp queued':>10} "
          f"{'shed':>5}  [ms]")
    print("  (sim: losing copies stopped at the first finish; sim queued: only the queued ones "
          "dropped, as the runtime's in-band cancel does; sim never: every copy served; emp "
          "queued: as sim queued, resampling the measured times instead of the fit)")
    emp = Empirical(tuple(times))
    for load, k, count, shed, p50, p99 in rows:
        sim, queued, never = (simulate(fit, n, k, load, requests=a.requests, cancel=c).p99
                              for c in ("finish", "queued", "never"))
        eq = simulate(emp, n, k, load, requests=a.requests, cancel="queued").p99
        print(f"{load:>5.2f} {k:>2} {count:>8} {p50 * 1e3:>9.2f} {p99 * 1e3:>9.2f} "
              f"{sim * 1e3:>9.2f} {queued * 1e3:>10.2f} {never * 1e3:>9.2f} {eq * 1e3:>10.2f} "
              f"{shed:>5}")


if __name__ == "__main__":
    main()
