"""A plan's cost steps (``adapt.costs.PlanCost``) compiled onto a simulation's resources: each
resource (a host's processor, a link) gets an index into one list of when it is next free,
and each step one of the ops below, decided once per plan so that the simulator's loop per
request does not look at kinds, flags and zero amounts again."""
from __future__ import annotations

from typing import Any, NamedTuple

from ..adapt.costs import CPU, FORK as FORK_STEP, TRACE_LINK
from ..planner.plan import Plan

# What a compiled step does to the request's clock x (see Resources.compile)
HOLD = 0  # hold the resource for ``hold`` seconds (first come, first served), then ``after``
DEVICE_CPU = 1  # HOLD with the device's compute divided by the policy's speed setting
LOADED_CPU = 2  # HOLD with the watched tier's compute times its load factor at the start
TRANSFER = 3  # carry ``bits`` over the device's link at the trace's rate, then ``after``
DELAY = 4  # only ``after``: no resource held (latency, codecs, an empty transfer)
FORK = 5  # the parts ``forks[resource]`` at once, each a chain of (op, resource, hold, after)
# of the ops above but TRANSFER, from the request's clock; the step ends with the slowest


class _Compiled(NamedTuple):
    steps: tuple[tuple[int, int, float, float, float], ...]  # (op, resource, hold, after, bits)
    cut: int  # index into the run's ``cuts``
    device_s: float  # compute on the device at speed 1 (for the energy)
    link_bits: float  # bits over the device's link per request (for the observation)
    plan: Plan  # kept so that its id() is not reused while the run holds it


class Resources:
    """The first-come-first-served resources of one run: when each is next free, and the
    plans compiled onto them (by the plan's id, as the policies hand out the same objects)."""

    def __init__(self, sim: Any, loaded: bool):
        self.sim, self.loaded = sim, loaded
        self.free: list[float] = []  # per resource index: when it is next free
        self.index: dict[str, int] = {}
        self.uplink = -1  # resource of the device's first forward link (observed transfers)
        self.device_cpu = -1
        # the device's link resources, both ways and to any first host: with the device's
        # compute, what a request arriving now waits behind (the backlog the policies see)
        self.device_links: list[int] = []
        self.cuts: list[str] = []  # placement of each plan used, in order of first use
        self.forks: list[tuple[tuple[tuple[int, int, float, float], ...], ...]] = []
        self.compiled: dict[int, _Compiled] = {}

    def resource(self, name: str) -> int:
        if name not in self.index:
            self.index[name] = len(self.free)
            self.free.append(0.0)
        return self.index[name]

    def compile(self, p: Plan) -> _Compiled:
        """``p``'s cost steps as the run's loop takes them (the ops above), its resources
        given indices into ``free``."""
        cost = self.sim.costs(p)
        steps = []
        link_bits = 0.0
        for kind, name, seconds, bits, held in cost.steps:
            rid = self.resource(name)  # every resource is known, even one a step never holds
            if kind == CPU:
                if name in self.sim.device_cpu:
                    self.device_cpu = rid
                    op = DEVICE_CPU
                elif name in self.sim.load_hosts and self.loaded:
                    op = LOADED_CPU
                else:
                    op = HOLD
                if seconds != 0.0:  # no compute: no wait either
                    steps.append((op, rid, seconds, 0.0, 0.0))
            elif kind == FORK_STEP:
                self.forks.append(tuple(self._part(part) for part in cost.forks[name]))
                steps.append((FORK, len(self.forks) - 1, 0.0, 0.0, 0.0))
            elif kind == TRACE_LINK:
                if self.uplink < 0:  # forward hops come first
                    self.uplink = rid
                if rid not in self.device_links:
                    self.device_links.append(rid)
                link_bits += bits
                steps.append((TRANSFER, rid, 0.0, seconds, bits) if bits > 0.0
                             else (DELAY, rid, 0.0, seconds, 0.0))
            else:
                steps.append((HOLD, rid, held, seconds, 0.0) if held > 0.0
                             else (DELAY, rid, 0.0, seconds, 0.0))
        if cost.cut not in self.cuts:
            self.cuts.append(cost.cut)
        c = self.compiled[id(p)] = _Compiled(tuple(steps), self.cuts.index(cost.cut),
                                             cost.device_s, link_bits, p)
        return c



    def _part(self, part: tuple) -> tuple[tuple[int, int, float, float], ...]:
        """One part of a FORK: its CPU and fixed-link steps as (op, resource, hold, after)."""
        out = []
        for kind, name, seconds, _bits, held in part:
            rid = self.resource(name)
            if kind == CPU:
                loaded = name in self.sim.load_hosts and self.loaded
                out.append((LOADED_CPU if loaded else HOLD, rid, seconds, 0.0))
            elif kind == TRACE_LINK:
                raise ValueError(f"a divided run's part cannot use the device's link ({name})")
            else:
                out.append((HOLD, rid, held, seconds) if held > 0.0 else (DELAY, rid, 0.0, seconds))
        return tuple(out)
