"""Pipelining across tiers: a 3-tier plan for a zoo CNN, sequential vs 4 requests in flight.

Device (this process), edge and cloud each run one third of the model's FLOPs at one intra-op
thread, on loopback. With one request at a time only one tier computes at any moment; with
several in flight each tier works on a different request, so throughput can approach the
slowest stage's rate. Goal: concurrency 4 >= 1.5x sequential throughput.

Two runs, edge and cloud child processes in both:
  loopback  every tier computes on this machine's CPUs, so the gain is bounded by the cores
            free (three tiers on two cores: at most 2x; the load average is printed).
  links     each hop through the userspace shaping proxy (100 Mbit/s, DELAY_MS one way):
            transfers and compute of different requests overlap as well.

Usage: python benchmarks/pipeline.py [MODEL] [REQUESTS] [DELAY_MS]
"""
from __future__ import annotations

import os
import sys

import torch


def thirds(graph) -> dict[str, int]:
    """Cut the topological order where the cumulative FLOPs pass 1/3 and 2/3."""
    total = sum(n.flops for n in graph.compute_nodes) or 1
    out, done = {}, 0
    for n in graph.compute_nodes:
        out[n.name] = min(2, int(3 * done / total))
        done += n.flops
    return out


def run(label, plan, endpoints, x, expected, requests):
    from tiercut.runtime.client import SplitClient

    with SplitClient(plan, endpoints) as client:
        out, m = client.infer(*x)
        assert torch.equal(out, expected), "split output differs from the whole model"
        stage_ms = [m.device_s * 1e3] + [t.compute_s * 1e3 for t in m.servers]
        results = {c: client.bench(x, requests=requests, concurrency=c, warmup=3)
                   for c in (1, 4)}
    print(f"[{label}] stage compute ms (device, edge, cloud): "
          + ", ".join(f"{s:.1f}" for s in stage_ms))
    for c, r in results.items():
        lat = r.latency_s
        print(f"[{label}] concurrency {c}: {r.throughput:6.2f} req/s, latency p50 "
              f"{lat['p50'] * 1e3:.1f} ms p90 {lat['p90'] * 1e3:.1f} ms, fallbacks {r.fallbacks}")
    speedup = results[4].throughput / results[1].throughput
    print(f"[{label}] concurrency 4 / sequential = {speedup:.2f}x (goal >= 1.5x) "
          f"{'ok' if speedup >= 1.5 else 'MISSED'}")


def _address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def main(model: str = "resnet18", requests: int = 40, delay_ms: float = 20.0) -> None:
    from tiercut.link.shaper import ShapingProxy
    from tiercut.runtime.launch import spawn
    from tiercut.runtime.stageplan import StagePlan, example_inputs, model_graph
    from tiercut.zoo import resolve

    torch.set_num_threads(1)
    plan = StagePlan.from_assignment(model, thirds(model_graph(model)),
                                     ("device", "edge", "cloud"))
    x = example_inputs(plan)
    with torch.inference_mode():
        expected = resolve(model).build()(*x)
    print(f"{model}, {requests} requests; loadavg {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (shared with other work)")
    with spawn([model], threads=1) as edge, spawn([model], threads=1) as cloud:
        run("loopback", plan, [edge.endpoint, cloud.endpoint], x, expected, requests)
        with ShapingProxy.in_thread(to=_address(edge.endpoint), rate_bps=100e6,
                                    delay_s=delay_ms / 1e3) as to_edge, \
                ShapingProxy.in_thread(to=_address(cloud.endpoint), rate_bps=100e6,
                                       delay_s=delay_ms / 1e3) as to_cloud:
            run(f"links 100 Mbit/s, {delay_ms:g} ms", plan,
                [f"127.0.0.1:{to_edge.port}", f"127.0.0.1:{to_cloud.port}"], x, expected,
                requests)
    print(f"loadavg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "resnet18",
         int(sys.argv[2]) if len(sys.argv) > 2 else 40,
         float(sys.argv[3]) if len(sys.argv) > 3 else 20.0)
