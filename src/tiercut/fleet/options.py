"""The cuts a user may choose between, as the few numbers the fleet simulator needs.

A cut option is one plan of a device/edge scenario reduced to what shared resources it uses:
``device_s`` of the user's own device, ``bits`` over the radio (both ways: the cell's airtime
is shared by its uplink and downlink), ``edge_s`` of an edge server at speed 1, and
``fixed_s``, what holds no shared resource (one-way latencies, encoding and decoding). The
options come from tiercut's decision table built with the edge's load as a second axis, so
they are the plans that are best for some bandwidth and some edge load: exactly the set a
load- and bandwidth-aware choice needs (a plan outside it is never the best at any point).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tiercut.mobility.cuts import workloads_from_table
from tiercut.planner.scenario import Scenario
from tiercut.planner.table import DecisionTable, build_table


@dataclass(frozen=True)
class CutOption:
    name: str  # the plan's placement, e.g. 'device:12 edge:40'
    device_s: float  # compute on the device at its profiled speed
    bits: float  # over the device's radio link, up and down
    edge_s: float  # compute on an edge server of speed 1
    fixed_s: float = 0.0  # latencies, encoding, decoding: no shared resource held

    def __post_init__(self):
        for field in ("device_s", "bits", "edge_s", "fixed_s"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"CutOption {self.name!r}: {field}={v!r}; accepted values "
                                 "are finite numbers >= 0")
        if self.bits == 0 and self.edge_s > 0:
            raise ValueError(f"CutOption {self.name!r}: edge_s={self.edge_s} with bits=0; a "
                             "cut that uses the edge sends something over the radio")

    @property
    def local(self) -> bool:
        """Runs wholly on the device: no radio, no edge."""
        return self.edge_s == 0 and self.bits == 0


def options_from_table(table: DecisionTable, device: str = "device",
                       edge: str = "edge") -> tuple[CutOption, ...]:
    """Every plan the table keeps, as cut options (all-device first when the table has it).
    The table is read as the mobility simulator reads it (``workloads_from_table``: raw
    tensors, the two tiers only); the state and cold start it also counts do not matter here."""
    splits = workloads_from_table(table, cold_start_s=0.0, device_alone_s=0.0, state_bits=0.0,
                                  device=device, edge=edge)
    out = [CutOption(w.name, w.device_s, w.up_bits + w.down_bits, w.edge_s, w.fixed_s)
           for w in splits]
    out.sort(key=lambda o: (not o.local, -o.device_s))
    return tuple(out)


def options_for(scenario: Scenario, low_bps: float = 1e5, high_bps: float = 1e10,
                max_load: float = 50.0) -> tuple[CutOption, ...]:
    """The cut options of a two-tier device/edge scenario, for bandwidths low..high and edge
    loads 1..max_load (the edge's compute times that factor)."""
    if len(scenario.tiers) != 2:
        raise ValueError(f"options_for needs a device/edge scenario of two tiers, got "
                         f"{scenario.tiers}")
    table = build_table(scenario, low_bps=low_bps, high_bps=high_bps,
                        load_tier=scenario.tiers[1], load_range=(1.0, max_load))
    return options_from_table(table, *scenario.tiers)


def as_arrays(options) -> dict[str, np.ndarray]:
    """The options' numbers as float arrays of length K, for vectorised costs."""
    options = tuple(options)
    if not options:
        raise ValueError("no cut options: give at least one CutOption")
    for o in options:
        if not isinstance(o, CutOption):
            raise ValueError(f"cut options must be CutOption, got {type(o).__name__}")
    return {f: np.array([getattr(o, f) for o in options], dtype=float)
            for f in ("device_s", "bits", "edge_s", "fixed_s")}
