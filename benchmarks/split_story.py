"""Issue 19's figure: on a real trained model, is the joint cut+codec plan measured faster than
all-device and than the input sent to the cloud, within its accuracy bound, and is its
prediction within 10 % of the measurement?

The testbed (``tiercut.testbed``): edge and cloud tier servers in their own processes, the
userspace shaping proxy on every hop, CPU caps where the machine allows them (device 0.1 CPU,
edge 0.5, cloud 1). Per link setting it measures, one request of each in turn, all-device,
input to cloud (best admissible input codec), the best lossless split and the joint plan
(``testbed.joint``); lossy answers are checked against the calibrated bound on every request.

- MiniLM-L6 (real weights), cosine to the whole model's embedding, ε = 0.01, the input private
  (the text's token ids never leave the device: ``--private-input 0``), codec table calibrated
  here on the first ``--samples`` sentences; the request is the data set's last sentence.
- The digits CNN (trained), top-1, ε = 0.01, no privacy: a case where no split can win.

Each figure is judged twice: against every baseline (input to cloud included, though it breaks
the private input), and against the baselines that keep the input private (all-device).

Usage: python benchmarks/split_story.py [--requests 5] [--samples 24] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from tiercut import trace
from tiercut.cli.calibrate import load_dataset
from tiercut.cli.testbed import request_for
from tiercut.codecs.calibrate import calibrate
from tiercut.measure import cpucap
from tiercut.planner import Constraints
from tiercut.testbed import Setting, run_testbed
from tiercut.testbed.joint import JointSetup, rows, verdict
from tiercut.zoo import entry

CASES = {
    "minilm_l6": dict(data="sentences", metric="cosine", cuts=6, private=0,
                      settings=(Setting("1mbit", 1e6, 0.030), Setting("5mbit", 5e6, 0.030),
                                Setting("10mbit", 10e6, 0.020),
                                Setting("100mbit", 100e6, 0.005))),
    "digits_cnn": dict(data="digits", metric="top1", cuts="all", private=None,
                       settings=(Setting("10mbit", 10e6, 0.020),)),
}
EPS = 0.01


def run_case(name: str, cfg: dict, samples: int, requests: int) -> list[dict]:
    zoo = entry(name)
    graph = trace(zoo.build(), zoo.example_inputs(), name=name)
    inputs, labels = load_dataset(cfg["data"], zoo, samples)
    t0 = time.perf_counter()
    table = calibrate(graph, inputs, labels, cfg["metric"], ["q8", "q4+zstd"], cfg["cuts"], name)
    print(f"\n== {name}: calibrated {len(table.cuts)} cuts x 2 codecs on {table.samples} samples "
          f"in {time.perf_counter() - t0:.0f} s; eps {EPS} ({cfg['metric']}); private input "
          f"{cfg['private']}")
    setup = JointSetup(table, EPS, Constraints(private_input=cfg["private"]))
    runs = run_testbed(name, cfg["settings"], requests, min_requests=3, budget_s=5.0,
                       log=lambda text: print("  " + text), joint=setup, inputs=request_for(zoo))
    out = rows(runs)
    for setting in dict.fromkeys(r["setting"] for r in out):
        by = {r["label"]: r for r in out if r["setting"] == setting}
        for r in by.values():
            print(f"  {setting:>7} {r['label']:<20} {r['placement']:<22} pred {r['predicted_ms']:7.1f}"
                  f" ms  meas {r['measured_ms']:7.1f} ms  err {r['error']:+6.1%}  sent "
                  f"{r['measured_bytes']:>7} B  {r['codec'] or '-':<8} {r['cut']:<26} loss "
                  f"cal {r['calibrated_loss']:.4f} run {r['seen_loss']:.4f}"
                  + ("" if r["private"] else "  (breaks the private input)"))
        j, d, c = by["joint"], by["all-device"], by["input to cloud"]
        split = "device:" in j["placement"] and j["placement"] != d["placement"]
        # True whenever we get here: run_testbed raised BoundError on any answer outside it
        bound = j["bound"] is None or j["seen_loss"] <= j["bound"]
        within = abs(j["error"]) <= 0.10
        both = split and j["measured_ms"] < min(d["measured_ms"], c["measured_ms"])
        private = split and j["measured_ms"] < d["measured_ms"]
        print(f"  {setting:>7} figure: joint is a split {split}; faster than all-device and input "
              f"to cloud {both}; faster than the private baselines {private}; within its bound "
              f"{bound}; prediction within 10% {within} ({j['error']:+.1%})")
        print(f"  {setting:>7} {verdict(list(by.values()))}")
        by["joint"]["figure"] = dict(split=split, beats_both=both, beats_private=private,
                                     within_bound=bound, prediction_within_10=within)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--samples", type=int, default=24, help="calibration samples per model")
    ap.add_argument("--models", default="minilm_l6,digits_cnn")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"host: {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, load "
          f"average {os.getloadavg()[0]:.2f}; CPU caps {'on' if cpucap.available() else 'off'}")
    result = {name: run_case(name, CASES[name], args.samples, args.requests)
              for name in args.models.split(",")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
