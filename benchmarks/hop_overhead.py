"""What one hop costs on loopback with the lossless raw codec: encode + gRPC + decode.

The device sends a 1 MiB and a 1 KiB float32 tensor to a tier server (a child process, as in
deployment) whose stage does nothing of note: "sink" models keep one element (the reply is
tiny, so the figure is one hop up), "echo" models return the tensor (the hop up and back).
Everything goes through wire.py and the codecs, exactly as a real request does. Figures are
medians over REQUESTS requests after a warm-up:

  round trip  = the client's whole request (Measurement.total_s): check, encode, RPC, server
                decode/check/stage/encode, reply decode (what a request pays for the hop)
  sync call   = the same timed around the blocking client.infer(): the round trip plus handing
                the request to the client's event-loop thread and back (the async ainfer()
                and bench() do not pay that)
  rpc         = the Infer round trip alone (no device-side encode/decode)
  transfer    = rpc minus the server's reported handling time (the Measurement's hop seconds)
  Health rpc  = an empty unary RPC: gRPC's floor for a unary call on this machine
  stream floor= 1 KiB of bytes and 10 bytes back on a bare grpc.aio bidirectional stream (no
                tiercut, no protobuf), what InferStream rides on: the transport's own floor

Each case runs twice per round: with the device (this process) on CPU 0 and the server on
CPU 1 ("own cores": two hosts, each with its own core, as two machines are; cpucap.pin), and
with both processes free to run on every CPU ("shared": they take turns on the cores, evicting
each other's caches). The cases run in interleaved rounds; the best round's medians are the
headline (the machine is shared, so a busy spell inflates one round), every round's figure is
printed too.

Goals: 1 MiB <= 2 ms, 1 KiB <= 0.5 ms. Usage: python benchmarks/hop_overhead.py [REQUESTS]
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import tiercut.runtime  # noqa: F401  (its gRPC transport settings: before grpc is imported)
import grpc
import torch
from torch import nn

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


class Sink(nn.Module):
    def forward(self, x):
        return x[:, :1]


def sink_1m() -> nn.Module:
    return Sink()


def sink_1k() -> nn.Module:
    return Sink()


class Echo(nn.Module):
    def forward(self, x):
        return x.reshape(1, -1)  # a view: the stage costs nothing, the tensor goes back


def echo_1m() -> nn.Module:
    return Echo()


sink_1m.input_shape = (1, 1 << 18)  # 1 MiB of float32
sink_1k.input_shape = (1, 1 << 8)  # 1 KiB
echo_1m.input_shape = (1, 1 << 18)
MODELS = {"sink 1 MiB": "hop_overhead:sink_1m", "sink 1 KiB": "hop_overhead:sink_1k",
          "echo 1 MiB": "hop_overhead:echo_1m"}
GOALS = {"sink 1 MiB": 2e-3, "sink 1 KiB": 0.5e-3}


def _echo_server(ports: "multiprocessing.Queue") -> None:
    """A bare grpc.aio server with one bidirectional method answering 10 bytes per message."""
    async def serve() -> None:
        async def echo(requests, context):
            async for message in requests:
                yield message[:10]
        handler = grpc.method_handlers_generic_handler(
            "floor.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)})
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()
    asyncio.run(serve())


def stream_floor(loop: asyncio.AbstractEventLoop, port: int, requests: int) -> float:
    """Median round trip of 1 KiB on one bare bidirectional stream to the echo server."""
    async def measure() -> float:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.stream_stream("/floor.Echo/Stream")()
            payload, times = bytes(1024), []
            for i in range(requests + 20):
                t = time.perf_counter()
                await call.write(payload)
                await call.read()
                times.append(time.perf_counter() - t)
            await call.done_writing()
            return statistics.median(times[20:])
    return loop.run_until_complete(measure())


def main(requests: int = 200, rounds: int = 3) -> None:
    from tiercut.measure import cpucap
    from tiercut.runtime import tiercut_pb2 as pb
    from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import spawn
    from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph

    torch.set_num_threads(1)
    print(f"loadavg before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(shared with other work: figures move with it)")
    env = {"PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    every = set(range(os.cpu_count() or 1))
    modes = ("own cores", "shared") if len(every) >= 2 else ("shared",)
    rows: dict[tuple[str, str], list[tuple[float, float | None, float | None, float | None]]] = {
        (k, mode): [] for k in ("Health rpc", "stream floor", *MODELS) for mode in modes}
    ports: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    echo = multiprocessing.get_context("spawn").Process(target=_echo_server, args=(ports,),
                                                        daemon=True)
    echo.start()
    echo_port = ports.get(timeout=60)
    floor_loop = asyncio.new_event_loop()  # one for every round: gRPC keeps to the loops it saw
    with spawn(list(MODELS.values()), threads=1, env=env) as server, \
            grpc.insecure_channel(server.endpoint) as channel:
        stub = pb_grpc.TierServerStub(channel)
        clients = {}
        for label, spec in MODELS.items():
            graph = model_graph(spec)
            plan = StagePlan.from_assignment(spec, {n.name: 1 for n in graph.compute_nodes},
                                             ("device", "edge"))
            clients[label] = (SplitClient(plan, [server.endpoint]), example_inputs(plan))
        for _ in range(rounds):  # rounds interleave the cases, so a busy spell hits them all
            for mode in modes:
                servers_cpus = {1} if mode == "own cores" else every
                cpucap.pin(os.getpid(), {0} if mode == "own cores" else every)
                cpucap.pin(server.process.pid, servers_cpus)
                cpucap.pin(echo.pid, servers_cpus)
                health = []
                for _ in range(requests):
                    t = time.perf_counter()
                    stub.Health(pb.HealthRequest())
                    health.append(time.perf_counter() - t)
                # a bare call has no rpc/transfer split and no blocking wrapper: those stay blank
                rows["Health rpc", mode].append((statistics.median(health), None, None, None))
                floor = stream_floor(floor_loop, echo_port, requests)
                rows["stream floor", mode].append((floor, None, None, None))
                for label, (client, x) in clients.items():
                    for _ in range(20):
                        client.infer(*x)
                    ms, calls = [], []
                    for _ in range(requests):
                        t = time.perf_counter()
                        ms.append(client.infer(*x)[1])
                        calls.append(time.perf_counter() - t)
                    rows[label, mode].append((statistics.median(m.total_s for m in ms),
                                              statistics.median(m.rpc_s for m in ms),
                                              statistics.median(m.hops[0].seconds for m in ms),
                                              statistics.median(calls)))
        for client, _ in clients.values():
            client.close()
    floor_loop.close()
    echo.terminate()
    print(f"medians over {requests} requests; each round's figure, best round first")
    print(f"{'case':<12} {'cores':<10} {'round trip':>11} {'rpc':>9} {'transfer':>9} "
          f"{'sync call':>10} {'goal':>8}  rounds (trip ms)")
    for (label, mode), figures in rows.items():
        best = min(figures, key=lambda f: f[0])
        goal = GOALS.get(label)
        verdict = "" if goal is None else ("ok" if best[0] <= goal else "MISSED")
        print(f"{label:<12} {mode:<10} {_ms(best[0], 11)} {_ms(best[1], 9)} {_ms(best[2], 9)} "
              f"{_ms(best[3], 10)} "
              f"{f'{goal * 1e3:.1f} ms' if goal else '':>8} {verdict:<6} "
              + " ".join(f"{f[0] * 1e3:.3f}" for f in figures))
    print(f"loadavg after: {os.getloadavg()[0]:.2f}")


def _ms(seconds: float | None, width: int) -> str:
    return f"{seconds * 1e3:.3f} ms".rjust(width) if seconds is not None else " " * width


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
