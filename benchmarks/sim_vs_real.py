"""The simulator against the runtime: one trace segment replayed through emulated links and
through the discrete-event simulator, same scenario, same plans, same arrival times.

Real side (the testbed's pieces, ``tiercut.testbed``): edge and cloud tier servers
(``runtime.launch.spawn``, one thread each), every hop a userspace ShapingProxy in one child
process; the device's two links (to the edge, to the cloud) replay the trace segment, the
edge-cloud hop is fixed (500 Mbit/s, 5 ms). Where root and cgroups allow, the device's compute
(the thread its stages run on, in this process) and the edge run under CPU caps (0.1 and 0.5
of one CPU) and each tier's speed factor is measured where it runs. Requests come from an
``AdaptiveClient`` (one request at a time) under a policy: ``static`` (the best plan for the
segment's first 5 s), ``adaptive`` (bandwidth estimator + decision table; between requests the
client sends the idle probes the policy asks for, ``AdaptiveClient.idle``, as the simulator
does) and ``hedged`` (adaptive, raced against the device while the link is uncertain: the
device computes while the request is on the link, so only its compute thread is capped, not
the process and its networking). Arrivals are periodic; a request that is due while the
previous one is still running starts when it ends, and the times the requests really started
(on the trace's clock, the proxies' start) are the arrivals given to the simulator.

Simulated side: ``sim.Simulator`` with the same scenario (profile scaled by the measured
speeds), the same segment and the same policy built from the same decision table. The machine
is shared, so each tier's speed is measured just before and just after each policy's run; the
plans come from the speeds before (as the real run's did), the simulator costs them at the
geometric mean of before and after, and a drift over 15% is flagged.

Trace: a 30 s segment (default 60-90 s) of a Norway HSDPA trace, scaled so that the segment's
median rate sits at twice the decision table's lowest breakpoint (where the best plan stops
being all-device): offloading is best most of the time and the segment's dips fall below the
breakpoint, so the cut has reason to change; the scale is printed. Each policy runs through the
segment twice (it loops), a request every 2 s.

Goal: mean latency of the simulator within 15% of the measured mean, per policy.

    .venv/bin/python benchmarks/sim_vs_real.py [--model resnet18] [--trace norway_bus_11]
        [--start 60 --length 30] [--interval 1.0] [--policies static,adaptive] [--no-caps]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tiercut.measure import cpucap
from tiercut.adapt.client import AdaptiveClient
from tiercut.adapt.policies import build_policy, candidates
from tiercut.link.child import ProxySpec, proxies_in_child
from tiercut.link.traces import BandwidthTrace, load_trace
from tiercut.planner import Host, Link, Scenario
from tiercut.planner.table import build_table
from tiercut.measure.predict import scale_profile
from tiercut.measure.profiler import ProfileSettings, profile_model
from tiercut.runtime.launch import spawn
from tiercut.sim.run import prepare
from tiercut.adapt.costs import CPU
from tiercut.sim.simulator import Simulator
from tiercut.testbed import CAPS, CLOUD_EXTRA_S, EDGE_CLOUD, TIERS, measure_speeds
from tiercut.zoo import entry

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "pensieve-cooked" / "src"
DELAY_S = 0.020  # one way, device to edge (the cloud is CLOUD_EXTRA_S further)
ABOVE = 2.0  # the segment's median rate is put this far above the table's first breakpoint


def segment(tr: BandwidthTrace, t0: float, t1: float) -> BandwidthTrace:
    """The trace between t0 and t1, starting at 0 (it loops after t1 - t0 as any trace)."""
    times = [t0] + [t for t in tr.times_s if t0 < t < t1]
    rates = [tr.rate_at(t) for t in times]
    times.append(t1)  # a closing sample so that one loop lasts about t1 - t0
    rates.append(rates[-1])
    return BandwidthTrace.from_samples(times, rates, f"{tr.name}[{t0:g}-{t1:g}s]")


def median_rate(tr: BandwidthTrace) -> float:
    """Time-weighted median rate of one loop."""
    ends = tr.times_s[1:] + (tr.duration_s,)
    pieces = sorted((r, e - s) for s, e, r in zip(tr.times_s, ends, tr.rates_bps))
    half, acc = sum(d for _, d in pieces) / 2, 0.0
    for r, d in pieces:
        acc += d
        if acc >= half:
            return r
    return pieces[-1][0]


def scenario(profile, speeds: dict[str, float], device_bps: float) -> Scenario:
    hosts = tuple(Host(t, t, scale_profile(profile, speeds[t], t)) for t in TIERS)
    links = {("device", "edge"): Link(device_bps, DELAY_S),
             ("device", "cloud"): Link(device_bps, DELAY_S + CLOUD_EXTRA_S),
             ("edge", "cloud"): EDGE_CLOUD}
    return Scenario(TIERS, hosts, links)


def run_real(policy, dial, direct, plans, inputs, reference, t_zero: float, interval: float,
             length: float, device: Executor) -> tuple:
    """Periodic requests for one loop of the segment. Returns (start times on the trace's clock,
    latencies, (requests the device answered, requests raced against the device), cut label of
    each request, idle probes sent, device compute of each request)."""
    with AdaptiveClient(policy, direct, deadline_s=120.0) as warm:  # build + run every stage
        for p in plans:
            warm.client_for(p).infer(*inputs)
    starts, latency, labels, fallbacks, times = [], [], [], 0, []
    raced = 0
    with AdaptiveClient(policy, dial, latency_s=DELAY_S, deadline_s=120.0,
                        device_executor=device) as client:
        client.prepare(plans)
        t_first = time.monotonic() - t_zero + 0.2
        k = 0
        while True:
            due = t_first + k * interval
            if due >= t_first + length:
                break
            now = time.monotonic() - t_zero
            if due > now:  # wait for the next arrival, probing the link if the policy asks
                client.idle(due - now)
            t0 = time.monotonic()
            output, m, p = client.infer(*inputs)
            latency.append(time.monotonic() - t0)
            starts.append(t0 - t_zero)
            if not torch.equal(output, reference):
                raise AssertionError("the split model's answer differs from the whole model's")
            fallbacks += m.fallback
            raced += m.hedged
            times.append((m.device_s, m.encode_s + m.decode_s,
                           m.hops[0].seconds if m.hops else 0.0,
                           sum(t.compute_s for t in m.servers)))
            labels.append(" ".join(f"{t}:{n}" for t, n in _counts(p).items() if n))
            k += 1
        probes = client.probes
    return starts, latency, (fallbacks, raced), labels, probes, times


@contextlib.contextmanager
def device_pool(fraction: float):
    """The thread the device's compute runs on, under a CPU cap of ``fraction`` (its
    networking, on this process's other threads, is not capped: while a hedged request is on
    the link the device computes, as a phone's slow cores would beside the one serving its
    sockets; the simulator's device and link are separate resources too)."""
    with contextlib.ExitStack() as stack:
        cap = stack.enter_context(cpucap.CpuCap(fraction)) if fraction < 1.0 else None
        pool = cpucap.capped_executor(cap) if cap else ThreadPoolExecutor(1)
        stack.callback(pool.shutdown)
        yield pool


def _counts(p) -> dict[str, int]:
    c = {t: 0 for t in p.hosts}
    for tier in p.assignment.values():
        c[tier] += 1
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--trace", default="norway_bus_11")
    ap.add_argument("--start", type=float, default=60.0)
    ap.add_argument("--length", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between arrivals "
                    "(well above the latency: the client sends one request at a time, while "
                    "the simulator would queue a request due before the last one ended)")
    ap.add_argument("--loops", type=int, default=2, help="times through the segment per policy")
    ap.add_argument("--policies", default="static,adaptive")
    ap.add_argument("--no-caps", action="store_true")
    args = ap.parse_args()
    path = next(iter(TRACES.rglob(args.trace)), None)
    if path is None:
        sys.exit(f"no trace {args.trace!r} under {TRACES}")
    raw = segment(load_trace(path), args.start, args.start + args.length)
    names = args.policies.split(",")

    caps = dict(CAPS)
    if args.no_caps or not cpucap.available():
        print("no CPU caps: every tier runs at this machine's full speed")
        caps = {t: 1.0 for t in TIERS}
    torch.set_num_threads(1)
    zoo = entry(args.model)
    module = zoo.build()
    inputs = zoo.example_inputs()
    with torch.no_grad():
        reference = module(*inputs)
    profile = profile_model(module, inputs, name=args.model,
                            settings=ProfileSettings(threads=1, repeat=5))
    real: dict[str, tuple] = {}
    setups: dict = {}
    with contextlib.ExitStack() as stack:
        servers = {t: stack.enter_context(spawn([args.model], threads=1)) for t in TIERS[1:]}
        for tier, server in servers.items():
            if caps[tier] < 1.0:
                stack.enter_context(cpucap.CpuCap(caps[tier])).add(server.process.pid)
        device = stack.enter_context(device_pool(caps["device"]))
        direct = {t: s.endpoint for t, s in servers.items()}
        speeds = measure_speeds(args.model, profile, module, inputs, direct,
                                device_executor=device)
        # scale the segment so that its median rate sits where the cut leaves the device
        sc0 = scenario(profile, speeds, 10e6)
        table0 = build_table(sc0, low_bps=1e4, high_bps=1e11)
        if not table0.breakpoints:
            sys.exit("one plan is best at every bandwidth: nothing for the cut to follow")
        scale = ABOVE * table0.breakpoints[0] / median_rate(raw)
        tr = raw.scaled(scale)
        plans = candidates(prepare(scenario(profile, speeds, median_rate(tr)), tr).setting.table)
        print(f"{args.model}; caps {caps}; measured speeds "
              + ", ".join(f"{t} x{v:.3f}" for t, v in speeds.items()))
        print(f"trace {tr.name}: scaled x{scale:.3g} so its median ({median_rate(tr) / 1e6:.3g} "
              f"Mbit/s) is {ABOVE:g}x the table's first breakpoint; range {min(tr.rates_bps) / 1e6:.3g}-"
              f"{max(tr.rates_bps) / 1e6:.3g} Mbit/s; {len(plans)} plans in the table")
        specs = [ProxySpec(servers["edge"].endpoint, None, DELAY_S, tr),
                 ProxySpec(servers["cloud"].endpoint, None, DELAY_S + CLOUD_EXTRA_S, tr),
                 ProxySpec(servers["cloud"].endpoint, EDGE_CLOUD.bandwidth_bps,
                           EDGE_CLOUD.latency_s)]
        with proxies_in_child(specs) as (addresses, t_zero):
            dial = {("device", "edge"): addresses[0], ("device", "cloud"): addresses[1],
                    ("edge", "cloud"): addresses[2]}
            direct_dial = {("device", "edge"): direct["edge"], ("device", "cloud"): direct["cloud"],
                           ("edge", "cloud"): direct["cloud"]}
            for name in names:
                # the machine is shared: measure each tier's speed again just before and just
                # after each run, and simulate that run with their geometric mean
                before = measure_speeds(args.model, profile, module, inputs, direct,
                                        device_executor=device)
                setup0 = prepare(scenario(profile, before, median_rate(tr)), tr)
                plans = candidates(setup0.setting.table)
                policy = build_policy(name, setup0.setting)
                real[name] = run_real(policy, dial, direct_dial, plans, inputs, reference, t_zero,
                                      args.interval, args.loops * tr.duration_s, device)
                after = measure_speeds(args.model, profile, module, inputs, direct,
                                        device_executor=device)
                speeds = {t: (before[t] * after[t]) ** 0.5 for t in before}
                # the same table and plans as the real run, costed at the mean speeds
                setups[name] = (setup0, Simulator(scenario(profile, speeds, median_rate(tr)), tr))
                real[name] += ((before, after),)
    print(f"\n{'policy':9s} {'requests':>8s} {'real ms':>8s} {'sim ms':>8s} {'sim/real':>8s} "
          f"{'switches real/sim':>17s} {'probes':>6s}  cuts used (real)")
    worst = 0.0
    for name in names:
        starts, latency, (fallbacks, raced), labels, probes, times, speeds = real[name]
        setup, sim = setups[name]
        res = sim.run(build_policy(name, setup.setting), np.asarray(starts), max(starts) + 1.0)
        model = {c.cut: c for c in map(sim.costs, candidates(setup.setting.table))}
        sim_mean, real_mean = float(res.latency_s.mean()), statistics.fmean(latency)
        worst = max(worst, abs(sim_mean / real_mean - 1))
        switches = sum(a != b for a, b in zip(labels, labels[1:]))
        before, after = speeds
        drift = max(abs(after[t] / before[t] - 1) for t in before)
        print(f"{'':9s} speeds just before / after the run: "
              + ", ".join(f"{t} x{before[t]:.3f}/{after[t]:.3f}" for t in before)
              + (f"  (drift {drift:.0%}: the machine's load changed; the comparison is "
                 "unreliable)" if drift > 0.15 else ""))
        print(f"{name:9s} {len(latency):8d} {real_mean * 1e3:8.1f} {sim_mean * 1e3:8.1f} "
              f"{sim_mean / real_mean - 1:+8.1%} {switches:8d}/{res.switches:<8d} {probes:6d}  "
              + "; ".join(sorted(set(labels))) + (f"  ({fallbacks} fell back)" if fallbacks else ""))
        if raced or res.hedged:
            print(f"{'':9s} raced against the device: real {raced}, sim {res.hedged}; the device "
                  f"answered first: real {fallbacks}, sim {res.local_wins}")
        for cut in sorted(set(labels)):  # where they differ: per placement, same requests
            idx = [i for i, c in enumerate(labels) if c == cut]
            sim_cut = [res.cuts[res.plan_index[i]] for i in idx]
            print(f"  {cut:22s} {len(idx):4d} requests: real {statistics.fmean(latency[i] for i in idx) * 1e3:7.1f} ms,"
                  f" sim {statistics.fmean(float(res.latency_s[i]) for i in idx) * 1e3:7.1f} ms"
                  f" (sim on the same placement for {sum(c == cut for c in sim_cut)})")
            d, codec, hop, servers = (statistics.fmean(times[i][j] for i in idx) * 1e3
                                      for j in range(4))
            c = model.get(cut)
            print(f"    real: device compute {d:.1f} ms, device encode+decode {codec:.1f} ms, "
                  f"first hop (transfer + latency) {hop:.1f} ms, servers' compute {servers:.1f} ms"
                  + (f"; model: device compute {c.device_s * 1e3:.1f} ms, servers' compute "
                     f"{sum(st[2] for st in c.steps[1:] if st[0] == CPU) * 1e3:.1f} ms, "
                     f"{c.device_bits / 1e6:.2f} Mbit over the first hop" if c else ""))
    print(f"largest |sim/real - 1|: {worst:.1%} (goal <= 15%)")


if __name__ == "__main__":
    main()
