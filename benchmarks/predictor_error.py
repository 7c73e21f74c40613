"""Leave-one-out error of the latency predictor over the zoo, on this host.

Profiles every model here, then for each model fits a LatencyPredictor on all the others and
predicts that one from its structure alone (op kinds, FLOPs, bytes). Per model it prints the
measured latency (Σ node medians), the predicted Σ, their relative error, and the median
absolute relative error over nodes slower than 0.1 ms. For scale, a naive baseline predicts
the model's Σ from FLOPs alone at the other models' pooled FLOP rate. Usage:
    python benchmarks/predictor_error.py [--threads N] [--repeat R] [--models a,b]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from tiercut import ProfileSettings, profile_model, zoo
from tiercut.measure.predict import LatencyPredictor

SLOW_NODE_S = 1e-4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", default=None,
                    help="comma-separated zoo names or module:factory paths (default: the zoo)")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else zoo.names()
    settings = ProfileSettings(threads=args.threads, repeat=args.repeat, warmup=args.warmup)

    profiles = []
    for name in names:
        entry = zoo.resolve(name)
        t0 = time.perf_counter()
        p = profile_model(entry.build(), entry.example_inputs(), name=name, settings=settings)
        print(f"profiled {name:<16} {len(p.nodes):>4} nodes in {time.perf_counter() - t0:5.1f} s",
              file=sys.stderr)
        profiles.append(p)
    if len(profiles) < 2:
        raise SystemExit("leave-one-out needs at least two models")

    print(f"\nleave-one-out over {len(profiles)} models; host {profiles[0].host['cpu']!r}, "
          f"threads={profiles[0].settings['threads']} repeat={args.repeat}")
    print(f"{'model':<16}{'nodes':>6}{'measured ms':>13}{'predicted ms':>14}{'rel err':>9}"
          f"{'node MdAPE':>12}{'slow nodes':>12}{'flops-only err':>16}  pooled kinds")
    errors, baseline_errors = [], []
    for i, held_out in enumerate(profiles):
        others = profiles[:i] + profiles[i + 1:]
        predictor = LatencyPredictor.fit(others)
        predicted = predictor.predict(held_out)
        measured_s, predicted_s = held_out.total_latency_s, predicted.total_latency_s
        err = (predicted_s - measured_s) / measured_s
        errors.append(abs(err))
        node_errs = [abs(q.latency_s - m.latency_s) / m.latency_s
                     for m, q in zip(held_out.nodes, predicted.nodes) if m.latency_s > SLOW_NODE_S]
        mdape = statistics.median(node_errs) if node_errs else float("nan")
        rate = sum(p.total_latency_s for p in others) / sum(sum(n.flops for n in p.nodes)
                                                             for p in others)
        base_err = (rate * sum(n.flops for n in held_out.nodes) - measured_s) / measured_s
        baseline_errors.append(abs(base_err))
        pooled = ",".join(predicted.predicted["pooled_kinds"]) or "-"
        print(f"{held_out.model:<16}{len(held_out.nodes):>6}{measured_s * 1e3:>13.2f}"
              f"{predicted_s * 1e3:>14.2f}{err:>+9.1%}{mdape:>12.1%}{len(node_errs):>12}"
              f"{base_err:>+16.1%}  {pooled}")
    print(f"mean |rel err| of the model total: {statistics.fmean(errors):.1%} "
          f"(flops-only baseline: {statistics.fmean(baseline_errors):.1%})")


if __name__ == "__main__":
    main()
