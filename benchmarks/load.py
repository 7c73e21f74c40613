"""Load, soak and faults against tier servers on loopback (child processes, as deployed).

  python benchmarks/load.py [--clients 32] [--requests 3200] [--max-seconds 120]
      N concurrent SplitClients (one client id each) stream requests to one edge server whose
      --max-in-flight is --limit (default 64 >= 32 clients): throughput, p50, p99, errors,
      fallbacks and requests the server shed. Goal: no errors below the concurrency limit.
  python benchmarks/load.py --soak 600 [--sample-s 1]
      the same load for SOAK seconds (default run: --soak 0); samples the server's RSS and
      reports growth from the first minute's median (or first 10 %) to the last one's.
      Goal: < 5 % over 10 minutes.
  python benchmarks/load.py --faults 20
      two edge hosts, one of them behind a ShapingProxy; while 8 clients stream, inject FAULTS
      faults in rotation: kill -9 a host (restart it on its port next round), SIGTERM a host,
      cut the proxied host off (stop the proxy; restore next round), slow its link (proxy
      delay 2 s vs a 0.5 s per-host timeout). Every request is checked bit for bit against the
      whole model and accounted for: served, failed over or finished locally. Goal: 0 lost.

The model: a small MLP (256 -> 256 x 3), device runs the first layer. The machine may be
shared: figures are what this run saw.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn
from proc_common import rss_bytes  # benchmarks/, on the path when run as a script

HERE = Path(__file__).resolve().parent


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.l0, self.l1, self.l2, self.l3 = (nn.Linear(256, 256) for _ in range(4))

    def forward(self, x):
        x = torch.relu(self.l0(x))
        x = torch.relu(self.l1(x))
        x = torch.relu(self.l2(x))
        return self.l3(x)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return Mlp()


mlp.input_shape = (4, 256)
MODEL = "load:mlp"
ENV = {"PYTHONPATH": str(HERE)}


def _plan():
    from tiercut.runtime.stageplan import StagePlan, model_graph

    names = [n.name for n in model_graph(MODEL).compute_nodes]
    return StagePlan.from_assignment(MODEL, {n: 0 if n in ("l0", "relu") else 1
                                             for n in names}, ("device", "edge"))


def _pct(values, q):
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))]


async def _stream(clients, x, expected, stop_at, budget, out):
    """Each client sends one request after another until the budget or the time runs out
    (``stop_at``: a one-item list, so that the caller can move it)."""
    left = [budget]

    async def one(c):
        while left[0] > 0 and time.monotonic() < stop_at[0]:
            left[0] -= 1
            out["sent"] += 1
            try:
                y, m = await c.ainfer(x)
            except Exception as exc:  # noqa: BLE001 - counted, and reported
                out["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            if not torch.equal(y, expected):
                out["wrong"] += 1
            out["lat"].append(m.total_s)
            out["fallbacks"] += m.fallback
            out["failovers"] += m.failovers
            out["answered"] += 1

    await asyncio.gather(*(one(c) for c in clients))


def _clients(plan, endpoints, n, **kw):
    from tiercut.runtime.client import SplitClient

    return [SplitClient(plan, endpoints, tune_malloc=i == 0, **kw) for i in range(n)]


def _new_out():
    return {"sent": 0, "answered": 0, "fallbacks": 0, "failovers": 0, "wrong": 0, "lat": [],
            "errors": []}


def load(args) -> int:
    import grpc

    from tiercut.runtime import tiercut_pb2 as pb
    from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
    from tiercut.runtime.launch import spawn
    from tiercut.runtime.stageplan import example_inputs

    plan = _plan()
    (x,) = example_inputs(plan)
    expected = mlp()(x).detach()
    server = spawn([MODEL], env=ENV, threads=1,
                   extra_args=["--max-in-flight", str(args.limit), "--max-per-client", "4",
                               "--workers", "1"])
    samples: list[tuple[float, int]] = []
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            samples.append((time.monotonic(), rss_bytes(server.process.pid)))
            stop_sampling.wait(args.sample_s)

    try:
        clients = _clients(plan, [server.endpoint], args.clients, fallback=True)

        async def run():
            for c in clients:
                await c.aprepare()
            await clients[0].ainfer(x)  # warm-up
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            out = _new_out()
            seconds = args.soak if args.soak else args.max_seconds
            budget = 10**12 if args.soak else args.requests
            t = time.perf_counter()
            await _stream(clients, x, expected, [time.monotonic() + seconds], budget, out)
            out["seconds"] = time.perf_counter() - t
            for c in clients:
                await c.aclose()
            return out

        out = asyncio.run(run())
        stop_sampling.set()
        with grpc.insecure_channel(server.endpoint) as ch:
            load_now = pb_grpc.TierServerStub(ch).Load(pb.LoadRequest(), timeout=5).load
    finally:
        stop_sampling.set()
        server.kill()
    lat = out["lat"]
    print(f"load: {args.clients} clients, server --max-in-flight {args.limit} "
          f"--max-per-client 4 --workers 1 --threads 1, model {MODEL} (device l0, edge rest)")
    print(f"  {out['sent']} sent, {out['answered']} answered in {out['seconds']:.1f} s: "
          f"{out['answered'] / out['seconds']:.0f} req/s; latency ms p50 "
          f"{_pct(lat, 50) * 1e3:.2f} p99 {_pct(lat, 99) * 1e3:.2f} mean "
          f"{statistics.fmean(lat) * 1e3:.2f}")
    print(f"  errors {len(out['errors'])}, wrong outputs {out['wrong']}, fallbacks (shed or "
          f"unreachable, finished locally) {out['fallbacks']}; server: served "
          f"{load_now.served}, shed {load_now.shed}, expired {load_now.expired}")
    for e in out["errors"][:5]:
        print("   ", e)
    if args.soak and samples:
        t0 = samples[0][0]
        window = min(60.0, args.soak / 10)
        first = [r for t, r in samples if t - t0 <= window]
        last = [r for t, r in samples if t >= samples[-1][0] - window]
        a, b = statistics.median(first), statistics.median(last)
        print(f"soak: {args.soak} s, {len(samples)} RSS samples; first {window:.0f} s median "
              f"{a / 2**20:.1f} MiB, last {window:.0f} s median {b / 2**20:.1f} MiB: growth "
              f"{(b - a) / a * 100:+.2f} % (peak {max(r for _, r in samples) / 2**20:.1f} MiB)")
    return 1 if out["errors"] or out["wrong"] else 0


def faults(args) -> int:
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.launch import spawn
    from tiercut.runtime.stageplan import example_inputs

    plan = _plan()
    (x,) = example_inputs(plan)
    expected = mlp()(x).detach()
    a = spawn([MODEL], env=ENV, threads=1)
    b = spawn([MODEL], env=ENV, threads=1)
    ports = {"a": a.endpoint.rsplit(":", 1)[1], "b": b.endpoint.rsplit(":", 1)[1]}
    procs = {"a": a, "b": b}
    stack = contextlib.ExitStack()
    proxy_port = [0]

    def start_proxy():
        p = stack.enter_context(ShapingProxy.in_thread(
            listen=("127.0.0.1", proxy_port[0]), to=("127.0.0.1", int(ports["b"]))))
        proxy_port[0] = p.port
        return p

    proxy = start_proxy()
    via = f"127.0.0.1:{proxy_port[0]}"
    log: list[str] = []
    out = _new_out()
    try:
        clients = _clients(plan, [[a.endpoint, via]], 8, host_timeout_s=0.5,
                           retry_after_s=0.2)

        async def run():
            for c in clients:
                await c.aprepare()
            stop_at = [time.monotonic() + args.max_seconds]
            streaming = asyncio.ensure_future(_stream(clients, x, expected, stop_at, 10**9,
                                                      out))
            nonlocal proxy
            kinds = ["kill -9", "sigterm", "cut off", "slow"]
            broken: tuple | None = None
            injected = 0
            while injected < args.faults:
                await asyncio.sleep(args.fault_every_s)  # let traffic flow between faults
                if broken is not None:  # repair the last fault first
                    what, name = broken
                    if what in ("kill -9", "sigterm"):
                        procs[name] = await asyncio.to_thread(
                            spawn, [MODEL], 1, "127.0.0.1", ["--port", ports[name]], ENV)
                    elif what == "cut off":
                        proxy = start_proxy()
                    elif what == "slow":
                        proxy.delay_s = 0.0
                    log.append(f"repaired {what} on {name}")
                    broken = None
                    continue
                kind = kinds[injected % 4]
                name = "a" if injected % 8 < 4 else "b"
                if kind in ("cut off", "slow"):
                    name = "b"  # the proxied host
                if kind == "kill -9":
                    procs[name].kill()
                elif kind == "sigterm":
                    await asyncio.to_thread(procs[name].terminate, 30)
                elif kind == "cut off":
                    await asyncio.to_thread(stack.close)
                elif kind == "slow":
                    proxy.delay_s = 2.0
                injected += 1
                broken = (kind, name)
                log.append(f"fault {injected}: {kind} on {name} at {out['sent']} sent")
            await asyncio.sleep(args.fault_every_s)
            stop_at[0] = 0.0  # each client stops after the request it has in flight
            await asyncio.wait_for(streaming, timeout=120)
            for c in clients:
                await c.aclose()

        asyncio.run(run())
    finally:
        for p in procs.values():
            p.kill()
        stack.close()
    lost = out["sent"] - out["answered"] - len(out["errors"])
    print(f"faults: {args.faults} injected on 2 edge hosts (one behind a ShapingProxy), "
          f"8 clients streaming, per-host timeout 0.5 s, fallback on")
    for line in log:
        print("   ", line)
    print(f"  {out['sent']} requests sent, {out['answered']} answered ({out['fallbacks']} "
          f"finished locally, {out['failovers']} host failovers), errors "
          f"{len(out['errors'])}, wrong outputs {out['wrong']}, LOST {lost}")
    for e in out["errors"][:5]:
        print("   ", e)
    return 1 if lost or out["errors"] or out["wrong"] else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--limit", type=int, default=64, help="server --max-in-flight")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak (600 = 10 min)")
    ap.add_argument("--sample-s", type=float, default=1.0)
    ap.add_argument("--faults", type=int, default=0)
    ap.add_argument("--fault-every-s", type=float, default=1.0)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.exit(faults(args) if args.faults else load(args))


if __name__ == "__main__":
    main()
