"""Eager PyTorch vs the ONNX Runtime backend, whole model as one stage, batch 1, on the CPU.

Per model: median latency over REPEATS runs after warm-up, torch and onnxruntime runs
interleaved (so both see the same background load), the speed-up (torch / onnx), the error
max|onnx - torch| / max(1, max|torch|), and the build time (the first onnx_stages call on an
empty cache: export, check, compare with torch).

Usage: python benchmarks/onnx_speed.py [MODEL ...] [--threads 2] [--repeats 20] [--cache DIR]
Default models: the zoo CNNs. Add vit_tiny or minilm_l6 by name.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from tiercut import split, trace, zoo
from tiercut.runtime.onnx_stage import BackendError, onnx_stages

CNNS = ("alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "googlenet",
        "densenet121", "efficientnet_b0")
WARMUP = 3


def measure(name: str, cache: str, threads: int, repeats: int) -> dict:
    e = zoo.entry(name)
    model, x = e.build(), e.example_inputs(batch=1)
    graph = trace(model, x, name)
    [stage] = split(graph, {n.name: 0 for n in graph.compute_nodes})
    t0 = time.perf_counter()
    [ox] = onnx_stages(graph, [stage], cache, name, x, threads=threads)
    export_s = time.perf_counter() - t0
    env = dict(zip(graph.inputs, x))
    times: dict[str, list[float]] = {"torch": [], "onnx": []}
    runs = {"torch": stage.run, "onnx": ox.run}
    with torch.inference_mode():
        for i in range(WARMUP + repeats):
            for kind, run in runs.items():
                t = time.perf_counter()
                run(env)
                if i >= WARMUP:
                    times[kind].append(time.perf_counter() - t)
        ref, got = stage.run(env), ox.run(env)
    err = max((got[k].double() - ref[k].double()).abs().max().item()
              / max(1.0, ref[k].double().abs().max().item()) for k in ref)
    torch_ms, onnx_ms = (statistics.median(times[k]) * 1e3 for k in ("torch", "onnx"))
    return {"torch_ms": torch_ms, "onnx_ms": onnx_ms, "err": err, "export_s": export_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(CNNS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache", help="ONNX cache folder (default: a fresh temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load "
          f"{os.getloadavg()[0]:.2f}; torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}; {args.threads} threads, batch 1, median of "
          f"{args.repeats} after {WARMUP} warm-up, torch/onnx interleaved")
    print(f"{'model':<16}{'torch ms':>10}{'onnx ms':>10}{'speed-up':>10}{'max rel err':>13}"
          f"{'build s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            try:
                r = measure(name, args.cache or tmp, args.threads, args.repeats)
            except BackendError as exc:
                print(f"{name:<16}  cannot run on onnxruntime: {exc}")
                continue
            print(f"{name:<16}{r['torch_ms']:>10.2f}{r['onnx_ms']:>10.2f}"
                  f"{r['torch_ms'] / r['onnx_ms']:>9.2f}x{r['err']:>13.1e}{r['export_s']:>10.1f}",
                  flush=True)
    load = os.getloadavg()[0]
    print(f"# load average at the end {load:.2f} (on a shared machine, medians move with it)")


if __name__ == "__main__":
    main()
