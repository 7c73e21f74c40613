"""Predicted against measured latency of split inference over emulated links.

For links of 1, 10 and 100 Mbit/s with 20 ms one-way delay (userspace shaping proxy), the
testbed (``tiercut.testbed``) profiles the model here, plans device/edge/cloud, runs the chosen
plan and both baselines across real tier servers on loopback, one request of each in turn (a
drift of this machine's speed hits all three alike), and reports the median of 30 requests per
plan (fewer when the rounds pass ``--budget`` seconds per plan; the count is printed). Slower
hosts are CPU caps (cgroups, as root): device 0.1 and edge 0.5 of one CPU; each tier's speed
factor for the planner is measured where it runs, under its cap, before each setting's plans.

Goals: the chosen plan's measured median within 10% of its prediction, and never more than 5%
slower than the faster of all-device and all-cloud measured the same way.

    python benchmarks/split_latency.py [--model resnet18] [--requests 30] [--budget 60]
"""
from __future__ import annotations

import argparse

from tiercut.testbed import CAPS, SETTINGS, report, run_testbed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args()
    runs = run_testbed(args.model, SETTINGS, args.requests, budget_s=args.budget)
    print(f"\n{args.model}; CPU caps (fraction of one CPU): {CAPS}; measured speed factors "
          "per setting: " + "; ".join(
              f"{r.setting} " + ", ".join(f"{t} x{v:.3f}" for t, v in r.speeds.items())
              for r in runs if r.label == "chosen"))
    print(f"{'link':<12}{'placement':<26}{'n':>4}{'pred ms':>10}{'meas ms':>10}{'error':>8}"
          f"{'dev meas':>10}{'cloud meas':>11}{'vs best':>9}  goals")
    for r in report(runs):
        ok = abs(r["error"]) <= 0.10 and r["vs_best_baseline"] <= 0.05
        print(f"{r['setting']:<12}{r['placement']:<26}{r['requests']:>4}{r['predicted_ms']:>10.1f}"
              f"{r['measured_ms']:>10.1f}{r['error']:>+8.1%}{r['all-device_measured_ms']:>10.1f}"
              f"{r['all-cloud_measured_ms']:>11.1f}{r['vs_best_baseline']:>+9.1%}  "
              f"{'met' if ok else 'MISSED'}")
    for run in runs:
        print(f"  {run.setting:<12}{run.label:<11} predicted {run.predicted_s * 1e3:8.1f} ms, "
              f"measured median {run.median_s * 1e3:8.1f} ms over {len(run.measured_s)} "
              f"(min {min(run.measured_s) * 1e3:.1f}, max {max(run.measured_s) * 1e3:.1f}), "
              f"error {run.error:+.1%}")


if __name__ == "__main__":
    main()
