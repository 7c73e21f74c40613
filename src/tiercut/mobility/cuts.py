"""Workload options from a planner's decision table: the device/edge splits that are optimal
at some bandwidth of the device's link, as the handover simulator's per-request costs.

For each entry's plan (tiers ``device`` and ``edge`` only): device_s and edge_s are its
compute seconds per tier; up_bits is 8 x the raw bytes of the device->edge hop; the table's
per_inv_bw is the bits that cross the device's link per request, both ways (its cost is
affine in 1/bandwidth), so down_bits = per_inv_bw - up_bits: the outputs returned from the
edge (0 for a plan that ends on the device). fixed_s = base - device_s - edge_s is what does
not scale with the rate: the link's one-way latency each way. Only raw-codec plans are read
(with a codec the wire bits are not the tensor's bytes; a ValueError says so).

state_bits: given, or with ``profile``, 8 x the parameter bytes of the nodes the plan puts
on the edge (what a migration must move if servers do not already hold the weights).
device_alone_s: given, or the compute seconds of the table's device-only plan.
"""
from __future__ import annotations

from tiercut.mobility.handover import Workload


def workloads_from_table(table, cold_start_s: float, device_alone_s: float | None = None,
                         state_bits: float | None = None, profile=None,
                         device: str = "device", edge: str = "edge") -> tuple:
    """A tuple of Workloads, one per entry of ``table`` (a tiercut.planner DecisionTable)."""
    if not getattr(table, "entries", None):
        raise ValueError("workloads_from_table: table has no entries; give a DecisionTable "
                         "from tiercut.planner.table.build_table")
    if state_bits is None and profile is None:
        raise ValueError("workloads_from_table: give state_bits, or the profile to count "
                         "the edge part's parameter bytes")
    params = {n.name: n.param_bytes for n in profile.nodes} if profile is not None else {}
    rows = []
    for e in table.entries:
        p = e.plan
        used = {t for t, sec in p.tier_seconds.items() if sec > 0} | set(p.assignment.values())
        extra = used - {device, edge}
        if extra:
            raise ValueError(f"workloads_from_table: plan {p.placement()!r} uses tiers "
                             f"{sorted(extra)}; accepted are {device!r} and {edge!r} only")
        hops = [h for h in p.hops if h.src == device and h.dst == edge]
        for h in p.hops:
            if h.codec != "raw":
                raise ValueError(f"workloads_from_table: plan {p.placement()!r} sends "
                                 f"{h.src}->{h.dst} with codec {h.codec!r}; accepted is "
                                 f"'raw' only")
        device_s = float(p.tier_seconds.get(device, 0.0))
        edge_s = float(p.tier_seconds.get(edge, 0.0))
        up = 8.0 * sum(h.bytes for h in hops)
        down = max(0.0, round(float(e.per_inv_bw) - up)) if edge_s > 0 or hops else 0.0
        fixed = max(0.0, float(e.base) - device_s - edge_s)
        on_edge = [n for n, t in p.assignment.items() if t == edge]
        bits = float(state_bits) if state_bits is not None \
            else 8.0 * sum(params.get(n, 0) for n in on_edge)
        cut = ",".join(t for h in hops for t in h.tensors) or "-"
        rows.append(dict(device_s=device_s, up_bits=up, edge_s=edge_s, down_bits=down,
                         fixed_s=fixed if on_edge else 0.0, state_bits=bits if on_edge else 0.0,
                         name=f"{p.placement()} cut {cut}"))
    if device_alone_s is None:
        alone = [r["device_s"] for r in rows if r["edge_s"] == 0 and r["up_bits"] == 0]
        if not alone:
            raise ValueError("workloads_from_table: the table has no device-only plan; give "
                             "device_alone_s")
        device_alone_s = min(alone)
    return tuple(Workload(device_alone_s=float(device_alone_s), cold_start_s=cold_start_s,
                          **r) for r in rows)
