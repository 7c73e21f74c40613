"""Where should a moving user's edge stage live? Four handover policies, two settings.

Run: .venv/bin/python benchmarks/mobility.py

Workload (resnet18-like split after layer2, all per request):
- device_s 20 ms: conv1..layer2 on a phone CPU (assumed, about 1/6 of a ~120 ms full run)
- up_bits 0.8 Mbit: layer2 output 128x28x28 = 100,352 values at 8 bits
- edge_s 15 ms: layer3..fc on an edge GPU-less server (assumed)
- down_bits 32 kbit: 1000 fp32 logits
- device_alone_s 120 ms: the whole resnet18 on the phone (assumed)
- cold_start_s 0.5 s: loading the edge stage into a fresh worker (assumed)
- state_bits 90 Mbit: ~11.2 M parameters of layer3..fc at int8
Backhaul 1 Gbit/s, 2 ms per hop (assumed). Radio: tiercut.mobility.Radio defaults.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tiercut.mobility import POLICIES, Workload, World, compare, random_waypoint, road  # noqa

WORKLOAD = Workload(device_s=0.020, up_bits=0.8e6, edge_s=0.015, down_bits=32e3,
                    device_alone_s=0.120, cold_start_s=0.5, state_bits=90e6)
SEEDS = range(20)


def settings():
    walk_world = World.grid(3, 3, spacing_m=200.0, radius_m=150.0)
    walk = [random_waypoint(600.0, 1.4, pause_s=30.0, duration_s=1200.0, dt=1.0, seed=s)
            for s in SEEDS]
    drive_world = World.line(6, spacing_m=250.0, radius_m=150.0)
    drive = [road(1250.0, 15.0, duration_s=300.0, dt=0.5, seed=s) for s in SEEDS]
    return [("walking 1.4 m/s, 3x3 grid", walk_world, walk, 1.0),
            ("driving 15 m/s, line of 6", drive_world, drive, 0.5)]


def main():
    print(f"{'setting':27} {'policy':8} {'mean ms':>8} {'p95 ms':>8} {'migr':>6} "
          f"{'cold':>6} {'outside':>7} {'total s':>8}")
    for name, world, paths, dt in settings():
        res = compare(world, WORKLOAD, paths, dt)
        for p in POLICIES:
            r = res[p]
            print(f"{name:27} {p:8} {r['mean_s']*1e3:8.1f} {r['p95_s']*1e3:8.1f} "
                  f"{r['migrations']:6.1f} {r['cold_starts']:6.1f} {r['outside']:7.1f} "
                  f"{r['total_s']:8.1f}")
        a, n, v, o = (res[p]["total_s"] for p in ("aware", "nearest", "never", "oracle"))
        print(f"  aware beats nearest: {a < n}; beats never: {a < v}; "
              f"within 10% of oracle: {a <= 1.1 * o} (aware/oracle = {a / o:.3f})")


if __name__ == "__main__":
    main()
