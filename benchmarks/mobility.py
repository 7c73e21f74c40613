"""Where should a moving user's edge stage live? Four handover policies, three settings.

Run: .venv/bin/python benchmarks/mobility.py

Workload, measured: mobilenet_v2 from tiercut's zoo is profiled here (tiercut's profiler, 1
thread, repeat 3) and scaled to a device at 0.1x and edge servers at 1x; tiercut's decision
table (device-edge link of 0.1 Mbit/s-1 Gbit/s, 5 ms one way, raw tensors) gives the splits
that are optimal at some rate, and ``workloads_from_table`` turns each into a Workload option
(device ms, up kbit, edge ms from the plan; down bits = the logits; state = parameter bytes of
the edge part at fp32). Each request uses the cheapest option at its rate and server.

Still assumptions: the cold start (0.5 s to load the edge stage into a fresh worker), that a
migration moves the edge part's weights (servers do not hold the model already), the 5 ms
radio latency, and the backhaul: 1 Gbit/s, 2 ms per hop, hop counts from the layout (grid:
Manhattan distance in cells, line: index difference; packets pipeline, so a transfer pays the
per-hop delays and its bits once). ``World(..., backhaul="uniform")`` is the old one-hop world.
Radio: tiercut.mobility.Radio defaults. Pre-warming (the aware policy keeps one server
besides the stage's warm) copies the state there at a migration's backhaul cost, counted in
the total; the oracle pre-warms every destination for free, as a lower bound should.
"aware-np" is the aware rule with pre-warming off, and "nearest-warm" follows the user to
the nearest server with the same pre-warming as aware: the two say how much of aware's gain
is its migration rule and how much the pre-warming. The traces setting replaces the radio
with one Norway 3G/HSDPA trace per cell (pensieve-cooked, x10 to 1-60 Mbit/s, LTE-like: at
their own 0.1-6 Mbit/s every request runs on the device and no policy matters),
distance-scaled.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from tiercut.link.traces import load_trace  # noqa: E402
from tiercut.measure.predict import scale_profile  # noqa: E402
from tiercut.measure.profiler import ProfileSettings, profile_model  # noqa: E402
from tiercut.mobility import (POLICIES, AwareRule, CellTraces, World, compare,  # noqa
                              random_waypoint, road, workloads_from_table)
from tiercut.planner import Host, Link, Scenario  # noqa: E402
from tiercut.planner.table import build_table  # noqa: E402
from tiercut.zoo import resolve  # noqa: E402

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
MODEL = "mobilenet_v2"
SPEEDS = {"device": 0.1, "edge": 1.0}
RADIO_LATENCY_S = 0.005
COLD_START_S = 0.5
NORWAY_SCALE = 10.0
SEEDS = range(20)


def workload() -> tuple:
    torch.set_num_threads(1)
    entry = resolve(MODEL)
    prof = profile_model(entry.build(), entry.example_inputs(), name=MODEL,
                         settings=ProfileSettings(threads=1, repeat=3))
    hosts = tuple(Host(t, t, scale_profile(prof, SPEEDS[t], t)) for t in ("device", "edge"))
    scenario = Scenario(("device", "edge"), hosts,
                        {("device", "edge"): Link(10e6, RADIO_LATENCY_S)})
    table = build_table(scenario, low_bps=1e5, high_bps=1e9)
    return workloads_from_table(table, cold_start_s=COLD_START_S, profile=prof)


def cell_traces(n: int) -> CellTraces:
    files = sorted((TRACES / "pensieve-cooked/src/cooked_test_traces").glob("norway_*"))[:n]
    if len(files) < n:
        raise SystemExit(f"need {n} Norway traces under {TRACES}, found {len(files)}")
    return CellTraces(tuple(load_trace(f) for f in files), scale=NORWAY_SCALE,
                      distance_scaled=True)


def settings():
    walk_world = World.grid(3, 3, spacing_m=200.0, radius_m=150.0, backhaul="hops")
    walk = [random_waypoint(600.0, 1.4, pause_s=30.0, duration_s=1200.0, dt=1.0, seed=s)
            for s in SEEDS]
    drive_world = World.line(6, spacing_m=250.0, radius_m=150.0, backhaul="hops")
    drive = [road(1250.0, 15.0, duration_s=300.0, dt=0.5, seed=s) for s in SEEDS]
    traced = World.grid(3, 3, spacing_m=200.0, radius_m=150.0, backhaul="hops",
                        cell_traces=cell_traces(9))
    return [("walking 1.4 m/s, 3x3 grid", walk_world, walk, 1.0),
            ("driving 15 m/s, line of 6", drive_world, drive, 0.5),
            ("walking, 3x3, cell traces", traced, walk, 1.0)]


def main():
    wl = workload()
    print(f"{MODEL}: device {SPEEDS['device']}x, edge {SPEEDS['edge']}x; options "
          f"(state = the largest edge part, {max(o.state_bits for o in wl) / 1e6:.0f} Mbit; "
          f"device alone {wl[0].device_alone_s * 1e3:.0f} ms):")
    for o in wl:
        print(f"  {o.name:40} device {o.device_s * 1e3:6.1f} ms  up {o.up_bits / 1e3:7.0f} kbit"
              f"  edge {o.edge_s * 1e3:5.1f} ms  down {o.down_bits / 1e3:3.0f} kbit")
    print("backhaul: hop counts (grid: Manhattan, line: index difference), 1 Gbit/s, 2 ms/hop;"
          f" {len(SEEDS)} seeds; total = latencies + state transfers (migrations, pre-warms)")
    print(f"{'setting':27} {'policy':12} {'mean ms':>8} {'p95 ms':>8} {'migr':>6} "
          f"{'cold':>6} {'prew':>6} {'outside':>7} {'total s':>8}")
    for name, world, paths, dt in settings():
        res = compare(world, wl, paths, dt)
        res["aware-np"] = compare(world, wl, paths, dt, ("aware",),
                                  rule=AwareRule(prewarm=False))["aware"]
        for p in (*POLICIES, "aware-np"):
            r = res[p]
            print(f"{name:27} {p:12} {r['mean_s']*1e3:8.1f} {r['p95_s']*1e3:8.1f} "
                  f"{r['migrations']:6.1f} {r['cold_starts']:6.1f} {r['prewarms']:6.1f} "
                  f"{r['outside']:7.1f} "
                  f"{r['total_s']:8.1f}")
        a, n, w, v, o = (res[p]["total_s"]
                         for p in ("aware", "nearest", "nearest-warm", "never", "oracle"))
        print(f"  aware beats nearest: {a < n}; beats nearest-warm: {a < w}; beats never: "
              f"{a < v}; within 10% of oracle: {a <= 1.1 * o} (aware/oracle = {a / o:.3f})")


if __name__ == "__main__":
    main()
