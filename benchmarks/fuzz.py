"""A long fuzzing campaign against the codec decoder, request decoding and a live tier server.

N messages in all (default 100,000), seeded and reproducible:
  decoder level  (1 - RPC_SHARE of N): mutated valid codec frames and random bytes into
                 codecs.decode; mutated serialized InferRequests into protobuf parsing and
                 wire.decode_values. A crash is any exception other than CodecError /
                 WireError / DecodeError, or a tensor beyond the limits; a hang is one message
                 taking over 1 s.
  RPC level      (RPC_SHARE of N, default 10 %): mutated InferRequest / PrepareRequest bytes
                 and random bytes sent raw (no serializer) to a `tiercut serve` child process,
                 16 in flight, each with a 5 s deadline. A crash is an UNKNOWN or INTERNAL
                 status or the server process dying; a hang is DEADLINE_EXCEEDED.
At the end the server must still answer Health and a valid Infer; its RSS before and after is
printed. With --atheris N2, also N2 coverage-guided runs of atheris on codecs.decode (child
process; atheris exits when done).

Usage: python benchmarks/fuzz.py [--n 100000] [--rpc-share 0.1] [--seed 0] [--atheris 20000]
"""
from __future__ import annotations

import argparse
import importlib.util
import dataclasses
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from proc_common import rss_bytes  # benchmarks/, on the path when run as a script

HERE = Path(__file__).resolve().parent


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny()


tiny.input_shape = (2, 8)
MODEL = "fuzz:tiny"


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(max(len(out), 1))
        if op == 0 and out:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[pos] = rng.randrange(256)
        elif op == 2:
            out[pos:pos + 8] = rng.choice([0, 1, 2**31 - 1, 2**32, 2**63 - 1,
                                           2**64 - 1]).to_bytes(8, "little")
        elif op == 3:
            del out[pos:pos + rng.randint(1, 64)]
        elif op == 4:
            out[pos:pos] = rng.randbytes(rng.randint(1, 32))
        else:
            other = rng.choice(seeds)
            out[pos:] = other[rng.randrange(len(other) + 1):]
    return bytes(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rpc-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--atheris", type=int, default=0, help="atheris runs (0: none)")
    ap.add_argument("--atheris-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.atheris_child:
        return atheris_child(args.atheris_child)

    import grpc
    from google.protobuf.message import DecodeError

    from tiercut import codecs
    from tiercut.runtime import tiercut_pb2 as pb
    from tiercut.runtime import tiercut_pb2_grpc as pb_grpc
    from tiercut.runtime import wire
    from tiercut.runtime.launch import spawn
    from tiercut.runtime.stageplan import StagePlan, example_inputs, layout, model_graph

    sys.path.insert(0, str(HERE))
    limits = dataclasses.replace(codecs.DEFAULT_LIMITS, max_elements=1 << 16,
                                 max_bytes=1 << 20)
    rng = random.Random(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    frames = [codecs.encode(t, c) for t, c in [
        (torch.randn(2, 8, generator=g), "raw"), (torch.randn(3, 4, 5, generator=g), "fp16"),
        (torch.randn(2, 3, 4, 4, generator=g), "q8"), (torch.randn(64, generator=g), "q4+zstd"),
        (torch.randn(4, 16, generator=g), "raw+lz4"), (torch.arange(10), "raw"),
        (torch.randn(2, 4, 3, generator=g), "q6-channel+zstd"),
        (torch.randn(5, 5, generator=g), "bf16+lz4")]]

    graph = model_graph(MODEL)
    names = [n.name for n in graph.compute_nodes]
    plan = StagePlan.from_assignment(MODEL, {n: 0 if i < 2 else 1 for i, n in
                                             enumerate(names)}, ("device", "edge"))
    lay = layout(plan)
    env = dict(zip(graph.inputs, example_inputs(plan)))
    env.update(lay.stages[0].run(env))
    req = pb.InferRequest(plan_id=plan.plan_id, stage=1, request_id="fuzz")
    wire.encode_values({v: env[v] for v in lay.receives[1]}, "raw", req.values)
    infer_seeds = [req.SerializeToString()]
    prepare_seeds = [pb.PrepareRequest(plan_json=plan.to_json(), stage=1).SerializeToString()]

    n_rpc = int(args.n * args.rpc_share)
    n_dec = args.n - n_rpc
    crashes, hangs, slowest = [], 0, 0.0
    t0 = time.perf_counter()
    for i in range(n_dec):
        kind = i % 3
        if kind == 0:
            data = mutate(rng.choice(frames), rng, frames)
        elif kind == 1:
            data = rng.randbytes(rng.randint(0, 300))
        else:
            data = mutate(infer_seeds[0], rng, infer_seeds + frames)
        t = time.perf_counter()
        try:
            if kind < 2:
                x = codecs.decode(data, limits)
                assert x.numel() <= limits.max_elements
            else:
                try:
                    msg = pb.InferRequest.FromString(data)
                except DecodeError:
                    continue
                values, _ = wire.decode_values(msg.values, limits)
                for v in values.values():
                    if isinstance(v, torch.Tensor):
                        assert v.numel() <= limits.max_elements
        except (codecs.CodecError, wire.WireError):
            pass
        except Exception as exc:  # noqa: BLE001 - that is what we count
            crashes.append(f"decoder: {type(exc).__name__}: {exc} on {data[:48]!r}")
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        hangs += dt > 1.0
    dec_s = time.perf_counter() - t0
    print(f"decoder level: {n_dec} messages in {dec_s:.1f} s ({n_dec / dec_s:,.0f}/s); "
          f"crashes {len(crashes)}; hangs {hangs}; slowest {slowest * 1e3:.1f} ms")

    server = spawn([MODEL], env={"PYTHONPATH": str(HERE)},
                   extra_args=["--max-elements", str(limits.max_elements),
                               "--max-message-mb", "1"])
    rss0 = rss_bytes(server.process.pid)
    codes: dict[str, int] = {}
    rpc_crashes, rpc_hangs = 0, 0
    try:
        channel = grpc.insecure_channel(server.endpoint)
        stub = pb_grpc.TierServerStub(channel)
        stub.Prepare(pb.PrepareRequest(plan_json=plan.to_json(), stage=1), timeout=60)
        calls = {m: channel.unary_unary(f"/tiercut.runtime.TierServer/{m}",
                                        request_serializer=None, response_deserializer=None)
                 for m in ("Infer", "Prepare")}
        window: list = []
        t0 = time.perf_counter()

        def settle(f) -> None:
            nonlocal rpc_crashes, rpc_hangs
            exc = f.exception()
            code = grpc.StatusCode.OK if exc is None else exc.code()
            codes[code.name] = codes.get(code.name, 0) + 1
            if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                rpc_crashes += 1
                crashes.append(f"rpc: {code.name}: {exc.details()[:200]}")
            rpc_hangs += code == grpc.StatusCode.DEADLINE_EXCEEDED

        for i in range(n_rpc):
            r = i % 10
            if r < 7:
                method, data = "Infer", mutate(infer_seeds[0], rng, infer_seeds + frames)
            elif r < 8:
                method, data = "Prepare", mutate(prepare_seeds[0], rng, prepare_seeds)
            else:
                method, data = rng.choice(["Infer", "Prepare"]), rng.randbytes(
                    rng.randint(0, 2000))
            window.append(calls[method].future(data, timeout=5))
            if len(window) >= 16:
                settle(window.pop(0))
            if i % 1000 == 999 and server.process.poll() is not None:
                break
        for f in window:
            settle(f)
        rpc_s = time.perf_counter() - t0
        alive = server.process.poll() is None
        if not alive:
            rpc_crashes += 1
            crashes.append(f"rpc: server process died (rc {server.process.returncode})")
        health = stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthReply.SERVING
        valid = calls["Infer"](infer_seeds[0], timeout=10) is not None
        rss1 = rss_bytes(server.process.pid)
        channel.close()
    finally:
        server.kill()
    print(f"rpc level: {n_rpc} messages in {rpc_s:.1f} s ({n_rpc / rpc_s:,.0f}/s); "
          f"crashes {rpc_crashes}; hangs {rpc_hangs}; status codes {dict(sorted(codes.items()))}")
    print(f"server still serving: health {'SERVING' if health else 'NO'}, valid Infer "
          f"{'ok' if valid else 'FAILED'}; server RSS {rss0 / 2**20:.0f} -> "
          f"{rss1 / 2**20:.0f} MiB")
    if args.atheris and importlib.util.find_spec("atheris") is None:
        print("atheris: not installed here (pip install atheris); its runs are skipped")
    elif args.atheris:
        done = subprocess.run([sys.executable, __file__, "--atheris-child", str(args.atheris)],
                              capture_output=True, text=True, timeout=1800)
        tail = [ln for ln in done.stderr.splitlines() if "Done" in ln or "crash" in ln.lower()
                or "ERROR" in ln]
        print(f"atheris: {args.atheris} runs on codecs.decode, exit {done.returncode} "
              f"({'no crash' if done.returncode == 0 else 'CRASH'}); {' | '.join(tail[-3:])}")
        crashes += [] if done.returncode == 0 else ["atheris"]
    print(f"TOTAL: {args.n} messages; crashes {len(crashes)}; hangs {hangs + rpc_hangs}")
    for c in crashes[:20]:
        print("  ", c)
    sys.exit(1 if crashes or hangs or rpc_hangs or not (health and valid) else 0)


def atheris_child(runs: int) -> None:
    import atheris

    with atheris.instrument_imports():
        from tiercut import codecs
    limits = dataclasses.replace(codecs.DEFAULT_LIMITS, max_elements=1 << 16, max_bytes=1 << 20)
    seeds = [codecs.encode(torch.randn(2, 8), c) for c in ("raw", "q8+zstd", "fp16+lz4")]

    def one(data: bytes) -> None:
        if data[:1] == b"\x00" and len(data) > 2:  # also mutate around valid frames
            seed = seeds[data[1] % len(seeds)]
            data = seed[:data[2] % len(seed)] + data[3:]
        try:
            x = codecs.decode(data, limits)
            assert x.numel() <= limits.max_elements
        except codecs.CodecError:
            pass

    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=512", "-timeout=5"], one)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
