"""Issue 20's figure: one layer range of VGG-16 divided across 1, 2, 3 and 4 edge nodes,
measured against predicted, and the speed-up over the best single-edge plan.

Hosts: each edge node is a tier server in its own process (``tiercut.cli.serve``, one thread),
pinned to one of the two CPUs and held to ``--cap`` of a CPU by a cgroup CPU cap (when run as
root; at full speed otherwise, and it says so). Each sits behind its own emulated link from the
coordinator (this process, which only scatters and gathers): the userspace shaping proxy at
``--rate``/``--delay`` (100 Mbit/s and 1 ms by default). A request is the run's source (the
224x224 input) on the coordinator; it ends when the run's whole output is stitched there.

Prediction: each node's seconds per graph node are this machine's profile (one thread) over the
node's speed factor, measured where it runs (the whole run as one part, the compute seconds the
server reports), times the node's efficiency at a part's size (a half and a quarter of the rows
measured there too: a smaller tile runs faster per row, its activations staying in cache, and
the cost model would overestimate it by about 20% without this); the division is ``decompose.planner.best_division`` (exact) over the nodes
given, and the single-edge plan the same with one part. Per run length (the run always starts at
the input) and per number of nodes: predicted and measured latency (median of ``--requests``),
the speed-up over the single-edge plan, the halo's redundant compute, the bytes scattered and
gathered, and the largest activation memory of a part against the undivided run's. Every
answer is checked against the undivided run (bit for bit, or within 1e-5 relative).

Usage: python benchmarks/decompose.py [--requests 5] [--cap 0.4] [--rate 100mbit] [--delay 1ms]
       [--ends features_4,features_9,features_16,features_23,features_29] [--nodes 4]
       [--plot out/decompose.png] [--json out/decompose.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from pathlib import Path

import torch

from tiercut import trace
from tiercut.decompose import SpatialRun
from tiercut.graph.split import node_values
from tiercut.decompose.planner import Worker, best_division, part_seconds, row_costs
from tiercut.link.child import ProxySpec, proxies_in_child
from tiercut.measure import cpucap
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.planner.scenario import parse_rate, parse_seconds
from tiercut.runtime.fanout import FanOut
from tiercut.runtime.launch import spawn
from tiercut.zoo import entry

MODEL = "vgg16"


def memory_bytes(run: SpatialRun, part) -> int:
    """Activations a part holds if nothing is freed: its source crop and every node's part."""
    total = 0
    for v, ((r0, r1), (c0, c1)) in part.rects.items():
        total += run.shape[v][1] * (r1 - r0) * (c1 - c0) * 4
    return total


def measure(fan: FanOut, source, parts, assign, reference, requests: int):
    seconds, report = [], None
    for _ in range(requests):
        t0 = time.perf_counter()
        out, report = fan.run(source, parts, assign)
        seconds.append(time.perf_counter() - t0)
        scale = float(reference.abs().max())
        err = float((out - reference).abs().max()) / scale
        if err > 1e-5:
            raise SystemExit(f"a divided answer is {err:.2e} (relative) off the undivided run")
    return statistics.median(seconds), report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--cap", type=float, default=0.4)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--delay", default="1ms")
    ap.add_argument("--ends", default="features_4,features_9,features_16,features_23,features_29")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rate, delay = parse_rate(args.rate), parse_seconds(args.delay)
    torch.set_num_threads(1)
    e = entry(MODEL)
    module, inputs = e.build(), e.example_inputs()
    graph = trace(module, inputs, name=MODEL)
    vals = node_values(graph, *inputs)
    print(f"profiling {MODEL} here (1 thread) ...", flush=True)
    here = {n.name: n.latency_s for n in profile_model(
        module, inputs, name=MODEL, settings=ProfileSettings(threads=1, repeat=3)).nodes}
    capped = cpucap.available()
    print(f"{args.nodes} edge nodes, each a tier server in its own process pinned to CPU i % 2, "
          + (f"capped at {args.cap} CPU" if capped else "NOT capped (needs root and cgroups)")
          + f"; links {args.rate}, {args.delay} from the coordinator", flush=True)
    rows = []
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(spawn([MODEL], threads=1, cpus=[i % 2]))
                   for i in range(args.nodes)]
        if capped:
            for s in servers:
                stack.enter_context(cpucap.CpuCap(args.cap)).add(s.process.pid)
        addresses, _ = stack.enter_context(proxies_in_child(
            [ProxySpec(s.endpoint, rate, delay) for s in servers]))
        for end in args.ends.split(","):
            run = SpatialRun(graph, "features_0", end)
            costs = row_costs(run)
            source, reference = vals[run.source], vals[end]
            whole = run.part(((0, run.out_shape[2]), (0, run.out_shape[3])))
            fan = stack.enter_context(FanOut(addresses, MODEL, "features_0", end,
                                             deadline_s=120))
            for i in range(args.nodes):  # warm: each server builds the run once (its CPU cap
                fan.run(source, [whole], [i])  # would charge the tracing to the next compute)
            speeds, curves = [], []
            h = run.out_shape[2]
            for i in range(args.nodes):
                def compute_s(rows: int) -> float:  # the top ``rows`` rows, on node i (the
                    parts = run.row_parts([rows]) if rows < h else [whole]  # rest elsewhere)
                    where = [i, (i + 1) % args.nodes][:len(parts)]
                    return statistics.median(fan.run(source, parts, where)[1].parts[0].compute_s
                                             for _ in range(3))
                full = compute_s(h)
                speeds.append(sum(here[v] for v in run.names) / full)
                # measured over modelled seconds of a part of k rows (the model counts its
                # halo already): what the tile's size does beyond its share of the work
                model = part_seconds(costs, Worker("m", {v: here[v] / speeds[-1]
                                                         for v in run.names}))
                curves.append(((1.0, 1.0), *((k / h, compute_s(k) / model[0, k])
                                             for k in (h // 2, h // 4) if k >= 1)))
            workers = [Worker(addresses[i], {v: here[v] / speeds[i] for v in run.names}, rate,
                              delay, curves[i]) for i in range(args.nodes)]
            single = best_division(costs, workers, 1)
            single_s, srep = measure(fan, source, [whole], [single.workers[0]], reference,
                                     args.requests)
            print(f"{end:>12} single-edge on {single.workers[0]}: predicted "
                  f"{single.total_s * 1e3:.1f} ms, measured {single_s * 1e3:.1f} ms (compute "
                  f"{srep.parts[0].compute_s * 1e3:.1f} ms there); speeds "
                  + ", ".join(f"{v:.3f}" for v in speeds), flush=True)
            for n in range(1, args.nodes + 1):
                d = best_division(costs, workers[:n], n)
                edges = [0, *d.bounds, costs.height]
                parts = [run.part(((a, b), (0, run.out_shape[3])))
                         for a, b in zip(edges, edges[1:])]
                meas, rep = measure(fan, source, parts, list(d.workers), reference, args.requests)
                computed = sum(p.area(v) * 1.0 / (run.shape[v][2] * run.shape[v][3])
                               for p in parts for v in run.names) / len(run.names)
                row = {"end": end, "nodes": n, "parts": len(parts), "bounds": list(d.bounds),
                       "speeds": [round(s, 3) for s in speeds[:n]],
                       "predicted_ms": d.total_s * 1e3, "measured_ms": meas * 1e3,
                       "error": meas / d.total_s - 1,
                       "single_predicted_ms": single.total_s * 1e3,
                       "single_measured_ms": single_s * 1e3,
                       "speedup_measured": single_s / meas,
                       "speedup_predicted": single.total_s / d.total_s,
                       "halo_compute": computed - 1.0,
                       "scatter_bytes": rep.bytes_sent, "gather_bytes": rep.bytes_received,
                       "memory_ratio": max(memory_bytes(run, p) for p in parts)
                       / memory_bytes(run, whole), "recomputed": rep.recomputed}
                rows.append(row)
                print(f"{end:>12} nodes {n} parts {len(parts)} pred {row['predicted_ms']:7.1f} ms"
                      f" meas {row['measured_ms']:7.1f} ms ({row['error']:+.1%})  single-edge "
                      f"{row['single_measured_ms']:7.1f} ms: speed-up {row['speedup_measured']:.2f}x"
                      f" (pred {row['speedup_predicted']:.2f}x)  halo +{row['halo_compute']:.0%}"
                      f"  memory/part {row['memory_ratio']:.2f}  sent {rep.bytes_sent / 1e6:.2f} MB"
                      f" back {rep.bytes_received / 1e6:.2f} MB", flush=True)
    worst = max(abs(r["error"]) for r in rows)
    slower = [r for r in rows if r["parts"] > 1 and r["measured_ms"] > r["single_measured_ms"]]
    three = [r for r in rows if r["nodes"] == 3]
    best3 = max(three, key=lambda r: r["speedup_measured"]) if three else None
    print(f"worst prediction error {worst:.1%}; divisions measured slower than the single-edge "
          f"plan: {len(slower)}" + (f"; best with 3 nodes: {best3['speedup_measured']:.2f}x "
                                     f"({best3['end']})" if best3 else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot -> {args.plot}")


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for end in dict.fromkeys(r["end"] for r in rows):
        rs = [r for r in rows if r["end"] == end]
        line, = ax.plot([r["nodes"] for r in rs], [r["speedup_measured"] for r in rs], "o-",
                        label=f"features_0..{end} measured")
        ax.plot([r["nodes"] for r in rs], [r["speedup_predicted"] for r in rs], "x--",
                color=line.get_color(), alpha=0.6)
    ax.axhline(1.0, color="grey", linewidth=0.7)
    ax.set_xlabel("edge nodes")
    ax.set_ylabel("speed-up over the best single-edge plan (x: predicted)")
    ax.set_title("VGG-16: one run tiled across edge nodes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
