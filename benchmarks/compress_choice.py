"""Issue 6's figures: the cut and the codec chosen together on real trained models.

For the digits CNN (top-1, ε = 1 point) and the real MiniLM (cosine to the uncompressed
embedding, ε = 0.01, i.e. cosine >= 0.99):
1. calibrate on the first half of the held-out data (digits: 270 images; sentences: 107);
2. per link setting (1 and 10 Mbit/s, 20 ms, the testbed's device/edge/cloud), plan the best
   lossless placement and the joint cut+codec (free; with the raw input kept on the device;
   and with that plus a device compute budget of 25 % of the model, e.g. for battery),
   and report the bytes over the chosen cut against fp32 and the metric loss measured on the
   *other* half of the held-out data (never used to calibrate);
3. q8+lz4 encode+decode throughput, MB/s of fp32 input, one thread;
4. end to end: tier servers in their own processes, the userspace shaping proxy for every hop,
   CPU caps where the machine allows them (device 0.1 CPU, edge 0.5, cloud 1); the measured
   median latency of the joint plan against the best lossless plan (SplitClient with the plan's
   per-hop codecs).

Usage: python benchmarks/compress_choice.py [--models digits_cnn,minilm_l6] [--requests 8]
       [--json out.json] [--skip-e2e]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tiercut.measure import cpucap
from tiercut import trace, zoo
from tiercut.codecs.calibrate import calibrate
from tiercut.cli.calibrate import load_dataset
from tiercut.codecs import decode, encode
from tiercut.planner import Constraints, plan
from tiercut.planner.compress import plan_with_codecs
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.testbed import (CAPS, TIERS, Setting, link_proxies, measure_speeds,
                             scenario_for)

SETTINGS = (Setting("1mbit", 1e6, 0.020), Setting("10mbit", 10e6, 0.020))
BUDGET = 0.25  # the third constraint set: the device computes at most this share of the model
MODELS = {
    "digits_cnn": dict(data="digits", metric="top1", eps=0.01, cuts="all",
                       codecs=["fp16", "q8", "q6", "q4", "q2", "q8+lz4", "q6+lz4", "q4+lz4",
                               "q2+lz4", "q8+zstd", "q4+zstd", "q2+zstd"]),
    "minilm_l6": dict(data="sentences", metric="cosine", eps=0.01, cuts=8,
                      codecs=["fp16", "q8", "q6", "q4", "q8+lz4", "q8+zstd", "q6+zstd",
                              "q5-channel+zstd", "q4-channel+zstd"]),
}


def halves(inputs, labels):
    n = len(inputs[0])
    cal = (tuple(t[: n // 2] for t in inputs), labels[: n // 2] if labels is not None else None)
    test = (tuple(t[n // 2:] for t in inputs), labels[n // 2:] if labels is not None else None)
    return cal, test


def input_stays(graph) -> Constraints:
    """Every node that reads a model input runs on the device: the raw input never leaves it."""
    inputs = set(graph.inputs)
    return Constraints(pin={n.name: "device" for n in graph.compute_nodes if set(n.inputs) & inputs})


def test_loss(graph, test, metric, position, codec) -> float:
    t = calibrate(graph, test[0], test[1], metric, [codec], positions=[position])
    return t.cuts[0].codecs[0].loss


def throughput(x: torch.Tensor, codec: str = "q8+lz4", repeats: int = 200) -> float:
    for _ in range(5):
        decode(encode(x, codec))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decode(encode(x, codec))
        times.append(time.perf_counter() - t0)
    return x.numel() * 4 / statistics.median(times) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_cnn,minilm_l6")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-e2e", action="store_true", help="plan with the nominal CPU caps only")
    ap.add_argument("--z", type=float, default=1.645, help="admit a codec when its calibrated "
                    "loss plus z standard errors is <= eps (0: the loss alone)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"host: {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f} (2 shared cores: other work may be running)")
    out: dict = {"models": {}}
    work = {}
    for name in args.models.split(","):  # phase 1, uncapped: calibrate, check, profile
        cfg = MODELS[name]
        entry = zoo.entry(name)
        module = entry.build()
        graph = trace(module, entry.example_inputs(), name=name)
        inputs, labels = load_dataset(cfg["data"], entry)
        cal, test = halves(inputs, labels)
        t0 = time.perf_counter()
        table = calibrate(graph, cal[0], cal[1], cfg["metric"], cfg["codecs"], cfg["cuts"], name)
        cal_s = time.perf_counter() - t0
        eps = cfg["eps"]
        print(f"\n== {name} (admitted: loss + {args.z} standard errors <= eps): calibrated "
              f"{len(table.cuts)} cuts x {len(cfg['codecs'])} codecs on "
              f"{table.samples} held-out samples in {cal_s:.0f} s; baseline {cfg['metric']} "
              f"{table.baseline:.4f}; eps = {eps}")
        factor, cut, r = max(((1 / r.ratio, c, r) for c in table.cuts for r in c.allowed(eps, args.z)),
                             key=lambda t: t[0])
        loss = test_loss(graph, test, cfg["metric"], cut.position, r.codec)
        print(f"best admissible: cut {cut.position} ({cut.after or 'input'}, {cut.raw_bytes} B "
              f"raw) {r.codec}: {factor:.1f}x smaller; loss on the calibration half {r.loss:.4f} "
              f"(+-{r.stderr:.4f}), "
              f"on the held-out test half {loss:.4f} (eps {eps})")
        out["models"][name] = {
            "baseline": table.baseline, "calibration_s": cal_s, "cuts": len(table.cuts),
            "best": {"position": cut.position, "after": cut.after, "codec": r.codec,
                     "factor": factor, "cal_loss": r.loss, "test_loss": loss}, "plans": []}
        with torch.inference_mode():
            profile = profile_model(module, entry.example_inputs(), name=name,
                                    settings=ProfileSettings(threads=1, repeat=10))
        sample = tuple(t[len(t) // 2: len(t) // 2 + 1] for t in inputs)  # a real test sample
        work[name] = dict(module=module, graph=graph, table=table, profile=profile, test=test,
                          sample=sample, eps=eps, metric=cfg["metric"])
        if name == "minilm_l6":
            with torch.inference_mode():
                hidden = module.embeddings(sample[0])
            out["throughput_minilm_hidden"] = throughput(hidden.contiguous())
    x = torch.relu(torch.randn(1, 64, 56, 56, generator=torch.Generator().manual_seed(0)))
    out["throughput_relu_1x64x56x56"] = throughput(x)
    print(f"\nq8+lz4 encode+decode, 1 thread: {out['throughput_relu_1x64x56x56']:.0f} MB/s of "
          f"fp32 (ReLU activation 1x64x56x56)" + (
              f", {out['throughput_minilm_hidden']:.0f} MB/s (MiniLM hidden state 1x128x384)"
              if "throughput_minilm_hidden" in out else ""))
    rows = end_to_end(work, args.requests, not args.skip_e2e, args.z)  # phase 2, capped
    print("\n== the joint choice (bytes over the chosen cut, loss on the held-out test half)")
    for row in rows:  # phase 3, uncapped again: the chosen codecs' loss on the test half
        w = work[row["model"]]
        if row.get("codec"):
            row["test_loss"] = test_loss(w["graph"], w["test"], w["metric"], row["position"],
                                         row["codec"])
        what = (f"cut {row['position']} {row['cut_tensors']} {row['codec']}: {row['fp32_bytes']} B "
                f"raw -> {row['sent_bytes']} B ({row['factor']:.1f}x), loss calibration "
                f"{row['cal_loss']:.4f}+-{row['cal_stderr']:.4f} / test {row['test_loss']:.4f}" if row.get("codec")
                else "lossless plan kept (no calibrated codec is faster)")
        print(f"{row['model']:<10} {row['setting']:>6} {row['constraint']:<15} {what}")
        out["models"][row["model"]]["plans"].append(row)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


def end_to_end(work: dict, requests: int, run: bool, z: float) -> list[dict]:
    from tiercut.runtime.client import SplitClient
    from tiercut.runtime.launch import spawn

    rows = []
    capped = cpucap.available()
    caps = dict(CAPS) if capped else {t: 1.0 for t in TIERS}
    print(f"\n== plans{' and end to end' if run else ' (nominal caps, not run)'}: "
          f"{'CPU caps ' + str(caps) if capped else 'no CPU caps (all full speed)'}; "
          "userspace shaping proxy per hop")
    with contextlib.ExitStack() as stack:
        if run:
            servers = {t: stack.enter_context(spawn(list(work), threads=1)) for t in TIERS[1:]}
            dial = stack.enter_context(link_proxies(SETTINGS, {t: s.endpoint
                                                               for t, s in servers.items()}))
            for tier, server in servers.items():
                if caps[tier] < 1.0:
                    stack.enter_context(cpucap.CpuCap(caps[tier])).add(server.process.pid)
            if caps["device"] < 1.0:
                stack.enter_context(cpucap.CpuCap(caps["device"])).add(os.getpid())
        for name, w in work.items():
            speeds = (measure_speeds(name, w["profile"], w["module"], w["sample"],
                                     {t: s.endpoint for t, s in servers.items()})
                      if run else caps)
            print(f"{name}: speed factors " + ", ".join(f"{t} x{v:.3f}" for t, v in speeds.items()))
            with torch.inference_mode():
                reference = w["module"](*w["sample"])
            for setting in SETTINGS:
                sc = scenario_for(w["profile"], setting, speeds)
                private = input_stays(w["graph"])
                budget = dataclasses.replace(private, max_seconds={
                    "device": BUDGET * w["profile"].total_latency_s / speeds["device"]})
                for label, cons in (("free", Constraints()), ("input-on-device", private),
                                    (f"+device<={BUDGET:.0%}", budget)):
                    lossless = plan(sc, "latency", cons)
                    joint = plan_with_codecs(sc, w["table"], w["eps"], "latency", cons, z=z)
                    row = {"model": name, "setting": setting.name, "constraint": label,
                           "codecs": joint.codecs, "position": joint.position,
                           "lossless_pred_ms": lossless.total_s * 1e3,
                           "joint_pred_ms": joint.plan.total_s * 1e3}
                    if joint.choice is not None:
                        hop = joint.plan.hops[0]
                        row.update(codec=joint.choice.codec, cut_tensors=list(hop.tensors),
                                   fp32_bytes=hop.bytes, factor=1 / joint.choice.ratio,
                                   sent_bytes=round(hop.bytes * joint.choice.ratio),
                                   cal_loss=joint.choice.loss, cal_stderr=joint.choice.stderr)
                    line = (f"{name:<10} {setting.name:>6} {label:<15} lossless pred "
                            f"{row['lossless_pred_ms']:7.1f} ms | joint pred {row['joint_pred_ms']:7.1f} ms "
                            f"{joint.codecs}")
                    if run:
                        for kind, p, codecs in (("lossless", lossless, None),
                                                ("joint", joint.plan, joint.codecs)):
                            ms, agree = run_plan(SplitClient, p, codecs, dial, setting, w["sample"],
                                                 reference, requests, w["metric"])
                            row[f"{kind}_ms"], row[f"{kind}_answer"] = ms, agree
                        line += (f"; measured lossless {row['lossless_ms']:7.1f} ms, joint "
                                 f"{row['joint_ms']:7.1f} ms ({row['lossless_ms'] / row['joint_ms']:.2f}x), "
                                 f"answer {'same top-1' if w['metric'] == 'top1' else 'cosine'} "
                                 f"{row['joint_answer']}")
                    print(line, flush=True)
                    rows.append(row)
    return rows


def run_plan(client_cls, p, codecs, dial, setting, sample, reference, requests, metric):
    tiers = [TIERS[t] for t in p.route.tiers]
    endpoints = [dial[f"{setting.name}:{tiers[i - 1]}-{tiers[i]}"] for i in range(1, len(tiers))]
    kwargs = {"codec": codecs} if codecs else {}
    times = []
    with client_cls(p.to_dict(), endpoints, deadline_s=120.0, **kwargs) as client:
        for i in range(2 + requests):
            output, m = client.infer(*sample)
            if i >= 2:
                times.append(m.total_s)
    if metric == "top1":
        agree = bool(output.argmax(1).eq(reference.argmax(1)).all())
    else:
        agree = round(float(torch.nn.functional.cosine_similarity(output, reference).min()), 5)
    return statistics.median(times) * 1e3, agree


if __name__ == "__main__":
    main()
