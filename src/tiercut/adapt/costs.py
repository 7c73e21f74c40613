"""A plan's cost model as a few numbers per step, so that the simulator spends a handful of
float operations per request.

A request under a plan is a chain of steps, each on one resource served first come, first
served: compute on each visited tier, then each forward hop, then each hop of the outputs'
return. Compute steps take the planner's seconds (the device's divided by its speed setting,
the watched tier's times its current load factor). A hop's step holds the link for its bits
at the link's rate (the device's hops at the trace's rate at that time) and then adds what
does not hold the link: encoding, decoding and the one-way latency. With a constant rate equal
to the scenario's and nothing queued, the steps add up to the planner's ``total_s``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..planner.build import build
from ..planner.plan import Plan
from ..planner.problem import crossing
from ..planner.scenario import Scenario
from ..planner.solve import baseline

CPU, TRACE_LINK, FIXED_LINK, FORK = 0, 1, 2, 3
DEFAULT_POWER_W = (2.0, 1.0)  # device compute and radio power when the scenario gives neither


@dataclass(frozen=True)
class PlanCost:
    plan: Plan
    # (kind, resource name, seconds, bits): CPU (seconds of compute), TRACE_LINK (bits at the
    # trace's rate, plus seconds that do not hold the link), FIXED_LINK (bits at a fixed rate
    # folded into the seconds held, plus the seconds that do not)
    steps: tuple[tuple[int, str, float, float, float], ...]
    device_s: float  # compute on the device at speed 1
    device_bits: float  # bits over the device's link, both ways
    cut: str  # a short label of the placement, for timelines
    # a FORK step (a run divided across hosts, tiercut.sim.divided) names its entry here: the
    # parts that run at once, each a chain of (kind, resource, seconds, bits, held) steps of
    # the kinds above but TRACE_LINK; the step ends when the slowest part does
    forks: dict[str, tuple[tuple[tuple[int, str, float, float, float], ...], ...]] = \
        field(default_factory=dict)

    def latency_at(self, bandwidth_bps: float, load: float = 1.0, load_resource: str = "") -> float:
        """Latency with nothing queued at a constant device-link rate."""
        return _chain_s(self.steps, self.forks, bandwidth_bps, load, load_resource)


def _chain_s(steps: tuple, forks: dict, bandwidth_bps: float, load: float,
             load_resource: str) -> float:
    """``PlanCost.latency_at`` of a chain of steps (a FORK: its slowest part)."""
    total = 0.0
    for kind, res, seconds, bits, held in steps:
        if kind == CPU:
            total += seconds * (load if res == load_resource else 1.0)
        elif kind == TRACE_LINK:
            total += bits / bandwidth_bps + seconds
        elif kind == FORK:
            total += max(_chain_s(part, forks, bandwidth_bps, load, load_resource)
                         for part in forks[res])
        else:
            total += held + seconds
    return total


def plan_key(p: Plan) -> tuple:
    return (p.route, tuple(sorted(p.assignment.items())))


def plan_cost(scenario: Scenario, p: Plan) -> PlanCost:
    problem, side = build(scenario, p.route)
    route_tiers = [scenario.tiers[t] for t in p.route.tiers]
    hosts = [scenario.host(h) for h in p.route.hosts]
    labels = [0] * problem.n_inputs + [route_tiers.index(p.assignment[n])
                                       for n in problem.names[problem.n_inputs:]]
    m = len(route_tiers)
    compute = [0.0] * m
    for v in range(problem.n_inputs, len(labels)):
        compute[labels[v]] += side.compute_s[v][labels[v]]
    cross = crossing(problem, labels)
    steps: list[tuple[int, str, float, float, float]] = [(CPU, f"cpu:{hosts[0].name}", compute[0], 0.0, 0.0)]
    device_bits = 0.0

    def hop(a, b, nbytes: float, device_link: bool) -> tuple[int, str, float, float, float]:
        nonlocal device_bits
        codec, link = scenario.codec(a, b), scenario.link(a, b)
        bits = nbytes * codec.ratio * 8.0
        extra = nbytes * (codec.encode_s_per_byte + codec.decode_s_per_byte) + link.latency_s
        name = f"link:{a.name}->{b.name}"
        if device_link:
            device_bits += bits
            return (TRACE_LINK, name, extra, bits, 0.0)
        return (FIXED_LINK, name, extra, bits, nbytes * codec.ratio * link.seconds_per_byte)

    for i in range(1, m):
        sent = sum(problem.out_bytes[u] for u in cross[i])
        steps.append(hop(hosts[i - 1], hosts[i], sent, i == 1))
        steps.append((CPU, f"cpu:{hosts[i].name}", compute[i], 0.0, 0.0))
    if scenario.return_outputs:
        for i in range(m - 1, 0, -1):
            back = sum(problem.out_bytes[v] for v in side.returned if labels[v] >= i)
            steps.append(hop(hosts[i], hosts[i - 1], back, i == 1))
    return PlanCost(p, tuple(steps), compute[0], device_bits, p.placement())


def device_powers(scenario: Scenario) -> tuple[float, float]:
    d = scenario.hosts_of(scenario.tiers[0])[0]
    if d.compute_power_w == 0 and d.radio_power_w == 0:
        return DEFAULT_POWER_W
    return d.compute_power_w, d.radio_power_w


class Costs:
    """PlanCost per plan, computed once."""

    def __init__(self, scenario: Scenario):
        self.scenario, self._by_key, self._by_id = scenario, {}, {}
        self._device_alone: PlanCost | None = None

    def device_alone_s(self) -> float:
        """The whole model on the device at speed 1: what a hedged request's device run
        takes from the start."""
        if self._device_alone is None:
            self._device_alone = self(baseline(self.scenario, self.scenario.tiers[0]))
        return self._device_alone.device_s

    def __call__(self, p: Plan) -> PlanCost:
        c = self._by_id.get(id(p))
        if c is None:
            key = plan_key(p)
            c = self._by_key.get(key) or plan_cost(self.scenario, p)
            self._by_key[key] = c
            self._by_id[id(p)] = c
        return c

    def register(self, p: Plan, cost: PlanCost) -> None:
        """Cost ``p`` (this object) as ``cost``: a plan whose steps ``plan_cost`` cannot see
        (a divided run). By identity only: an undivided plan may have the same placement."""
        self._by_id[id(p)] = cost
