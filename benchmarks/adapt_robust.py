"""The robust and hedged policies (issue 24) against static, adaptive and the oracle, on the
shared traces and on synthetic shapes written by the project (``tiercut.link.shapes``: a cold
start into an outage, a linear fade to near zero, flapping around the break-even rate).
``hedged-0`` is the hedged policy as it was before the rate belief (it raced only once a slow
rate was seen, and never backed up): the reference for device energy.

Set up as ``adapt_policies.py`` sets up its run: each model profiled here (1 thread, repeat 3)
and scaled device 0.1x, edge 1x, cloud 5x; device-edge and device-cloud links from the trace
(+20 ms, +45 ms); Poisson arrivals at ``--load`` (0.25) of what the device alone sustains; the
static plan the best for the first 5 s's mean rate. A trace is replayed for 600 s or its own
length. Short traces count: seeds are added (at least 3, at most ``MAX_SEEDS``) until a trace
has at least ``--min-requests`` requests over all seeds, so that one request does not decide
it; the table gives requests per seed.

Per trace: each policy's mean latency over the oracle's (x/or); adaptive, hedged and robust
over static (a ratio above 1.02 is "worse than static by more than 2%"); device energy per
request of hedged and robust over hedged-0's. The flapping shape flaps around the rate above
which the table's first remote plan beats the device alone (its break-even rate), per model.

    .venv/bin/python benchmarks/adapt_robust.py [--models resnet50,mobilenet_v2] [--quick]
        [--traces norway_ferry_17,flap]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import NamedTuple

import torch

from adapt_policies import measured, traces
from tiercut.adapt.costs import Costs
from tiercut.adapt.estimators import BandwidthEstimator
from tiercut.adapt.policies import HedgedPolicy, break_even_bps, build_policy
from tiercut.link import shapes
from tiercut.link.traces import BandwidthTrace
from tiercut.sim.run import prepare, run_policies
from tiercut.sim.simulator import Arrivals

POLICIES = ("static", "adaptive", "hedged", "robust", "oracle")  # built by name
QUANTILE = 0.9  # "robust-q": the robust policy scoring by this quantile instead of the mean


def hedged_before(setting):
    """The hedged policy as it was before the rate belief: it races only once a rate below the
    break-even was seen and never backs up (``hedged-0``: the energy figures' reference)."""
    local = Costs(setting.scenario).device_alone_s()
    return HedgedPolicy(setting.table, setting.initial_bps, local,
                        BandwidthEstimator(setting.initial_bps, window=setting.window),
                        setting.probe_every_s, setting.hedge_window_s, setting.hedge_after,
                        unsure_quantile=None, backup_after=None)


VARIANTS = {  # name -> builder over the Setting
    "hedged-0": hedged_before,
    "robust-q": lambda s: build_policy("robust", dataclasses.replace(s, quantile=QUANTILE)),
}
SHOWN = ("static", "adaptive", "hedged-0", "hedged", "robust", "robust-q")
VS_STATIC = ("adaptive", "hedged", "robust")  # mean latency over static's, per trace
ENERGY = ("hedged", "robust")  # device energy per request over hedged-0's, per trace
ABBREV = {"static": "st", "adaptive": "ad", "hedged-0": "h0", "hedged": "he", "robust": "ro",
          "robust-q": "rq"}
SYNTHETIC = ("cold", "fade", "flap")  # the names of tiercut.link.shapes' traces start so
MAX_SEEDS = 40
SHAPE_SEEDS = (0, 1, 2)


class Row(NamedTuple):
    model: str
    trace: str
    requests: float  # per seed
    seeds: int
    ratio: dict  # policy -> mean latency / oracle's
    vs_static: dict  # policy -> mean latency / static's
    energy: dict  # policy -> mean device J per request


def run_trace(setup, rate: float, duration: float, min_requests: int) -> tuple[dict, dict, int, float]:
    names = POLICIES + tuple(VARIANTS)
    lat = {n: [] for n in names}
    joules = {n: [] for n in names}
    counts = []
    seed = 0
    while seed < MAX_SEEDS and (seed < 3 or sum(counts) < min_requests):
        arrivals = Arrivals("poisson", rate)
        results = run_policies(setup, POLICIES, arrivals, duration, seed)
        for name, build in VARIANTS.items():
            r = setup.simulator.run(build(setup.setting), arrivals, duration, seed)
            r.policy = name
            results.append(r)
        for r in results:
            lat[r.policy].append(float(r.latency_s.sum()))
            joules[r.policy].append(float(r.energy_j.sum()))
        counts.append(len(r.latency_s))
        seed += 1
    n = sum(counts)
    # means over all requests of all seeds: each request counts once
    return ({k: sum(v) / n for k, v in lat.items()}, {k: sum(v) / n for k, v in joules.items()},
            seed, n / seed)


def center_bps(setup) -> float:
    """The lowest break-even rate of a remote plan in the table (where sending starts to pay)."""
    local = setup.simulator.costs.device_alone_s()
    rates = [break_even_bps(e, local) for e in setup.setting.table.entries]
    return min(r for r in rates if 0 < r < math.inf)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load", type=float, default=0.25)
    ap.add_argument("--min-requests", type=int, default=300)
    ap.add_argument("--traces", default="",
                    help="only the traces whose name contains one of these (comma-separated); "
                         "taken from the full list, even with --quick")
    args = ap.parse_args()
    torch.set_num_threads(1)
    wanted = [w for w in args.traces.split(",") if w]
    shared = traces(args.quick and not wanted)
    rows: list[Row] = []
    for model in args.models.split(","):
        _, sc, device_s = measured(model, shared[0])
        rate = args.load / device_s
        wide = prepare(sc, BandwidthTrace((0.0, 1.0), (1e5, 1e9), "wide"))  # 1 kbit/s-2 Gbit/s
        center = center_bps(wide)
        synth = shapes.shapes(center, SHAPE_SEEDS[:1] if args.quick else SHAPE_SEEDS)
        print(f"\n== {model}: device alone {device_s * 1e3:.0f} ms; Poisson {rate:.3g}/s; "
              f"flapping around {center / 1e6:.2f} Mbit/s")
        print(f"{'trace':26s} {'req/seed':>8s} {'seeds':>5s} " + " ".join(
            f"{ABBREV[n] + '/or':>6s}" for n in SHOWN) + " " + " ".join(
            f"{ABBREV[n] + '/st':>6s}" for n in VS_STATIC) + " " + " ".join(
            f"{ABBREV[n] + 'E/h0E':>8s}" for n in ENERGY))
        for tr in [t for t in shared + synth if not wanted or any(w in t.name for w in wanted)]:
            t0 = time.perf_counter()
            setup = prepare(sc, tr)
            lat, joules, seeds, per_seed = run_trace(setup, rate, min(600.0, tr.duration_s),
                                                     args.min_requests)
            ratio = {k: v / lat["oracle"] for k, v in lat.items()}
            vs = {k: v / lat["static"] for k, v in lat.items()}
            rows.append(Row(model, tr.name, per_seed, seeds, ratio, vs, joules))
            print(f"{tr.name[:26]:26s} {per_seed:8.1f} {seeds:5d} " + " ".join(
                f"{ratio[n]:6.3f}" for n in SHOWN) + " " + " ".join(
                f"{vs[n]:6.3f}" for n in VS_STATIC) + " " + " ".join(
                f"{joules[n] / joules['hedged-0']:8.2f}" for n in ENERGY)
                  + f"   ({time.perf_counter() - t0:.1f} s)")
    print("\n== summary (within 10% of the oracle; worst mean latency over static's; device "
          "energy per request over the hedged policy's before the belief, hedged-0)")
    for model in args.models.split(","):
        for label, keep in (("all", lambda r: True),
                            ("shared", lambda r: r.trace.split("-")[0] not in SYNTHETIC),
                            ("synthetic", lambda r: r.trace.split("-")[0] in SYNTHETIC)):
            rs = [r for r in rows if r.model == model and keep(r)]
            if not rs:
                continue
            close = {n: sum(r.ratio[n] <= 1.10 for r in rs) for n in SHOWN}
            worst = {n: max(r.vs_static[n] for r in rs) for n in SHOWN[1:]}
            energy = {n: [r.energy[n] / r.energy["hedged-0"] for r in rs] for n in ENERGY}
            req = [r.requests for r in rs]
            print(f"{model} [{label}, {len(rs)} traces]: within 10% of oracle: " + ", ".join(
                f"{n} {close[n]}" for n in SHOWN) + "; worst vs static: " + ", ".join(
                f"{n} x{worst[n]:.3f}" for n in worst) + "; energy over hedged-0: " + ", ".join(
                f"{n} x{statistics.fmean(e):.2f} (x{min(e):.2f}-x{max(e):.2f})"
                for n, e in energy.items())
                  + f"; requests per trace and seed {min(req):.0f}-{max(req):.0f}, seeds "
                  f"{min(r.seeds for r in rs)}-{max(r.seeds for r in rs)}")


if __name__ == "__main__":
    main()
