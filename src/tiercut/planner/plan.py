"""Plan: node -> tier and host, what crosses each hop, and the predicted cost. Plain data."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .build import Constraints, build
from .problem import Problem, Route, Side, crossing, evaluate
from .scenario import Scenario


@dataclass(frozen=True)
class Hop:
    src: str  # tier
    dst: str
    src_host: str
    dst_host: str
    tensors: tuple[str, ...]
    bytes: int  # raw bytes of the tensors
    seconds: float  # encode, transfer, decode, plus one-way latency
    codec: str = "raw"
    tensor_bytes: tuple[int, ...] = ()  # raw bytes of each tensor, in the order of ``tensors``


@dataclass(frozen=True)
class Plan:
    model: str
    objective: str
    # the objective's value: seconds for latency, joules for energy, and for throughput the
    # seconds per request of the slowest pipeline stage (compute per tier, transfer per hop)
    value: float
    total_s: float  # predicted latency of one request, whatever the objective
    method: str
    route: Route
    assignment: dict[str, str]  # node -> tier
    hosts: dict[str, str | None]  # tier -> host, None for a tier the data does not visit
    tier_seconds: dict[str, float]  # compute seconds per visited tier
    hops: tuple[Hop, ...]
    return_s: float  # the outputs' trip back to the device (0 when not counted)
    private: tuple[str, ...] = ()  # nodes the private-input constraint kept on the device

    def placement(self) -> str:
        """Nodes per tier that runs any, in tier order: 'device:9 cloud:163'."""
        counts = {t: 0 for t in self.hosts}
        for tier in self.assignment.values():
            counts[tier] += 1
        return " ".join(f"{t}:{n}" for t, n in counts.items() if n)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["route"] = {"tiers": list(self.route.tiers), "hosts": list(self.route.hosts)}
        data["predicted"] = {"total_s": self.total_s, "objective": self.objective,
                             "value": self.value}
        if self.objective == "throughput":  # value: seconds per request at the slowest stage
            data["predicted"]["requests_per_s"] = 1.0 / self.value if self.value else None
        data["bytes"] = {f"{h.src}-{h.dst}": h.bytes for h in self.hops}
        data["hops"] = [{**asdict(h), "tensors": list(h.tensors),
                         "tensor_bytes": list(h.tensor_bytes)} for h in self.hops]
        data["private"] = list(self.private)
        return data


def describe(scenario: Scenario, route: Route, labels: Sequence[int], objective: str,
             value: float, method: str, latency: tuple[Problem, Side] | None = None) -> Plan:
    """Turn a route and its labels into a Plan, with the latency breakdown. ``latency``: the
    route's latency problem when the caller has it already."""
    problem, side = latency or build(scenario, route, "latency", Constraints())
    names, tiers = problem.names, [scenario.tiers[t] for t in route.tiers]
    first = problem.n_inputs
    hops = []
    for i, tensors in enumerate(crossing(problem, labels)):
        if i == 0:
            continue
        sent = sum(problem.out_bytes[u] for u in tensors)
        a, b = scenario.host(route.hosts[i - 1]), scenario.host(route.hosts[i])
        hops.append(Hop(tiers[i - 1], tiers[i], a.name, b.name, tuple(names[u] for u in tensors),
                        int(sent), sent * problem.per_byte[i] + scenario.link(a, b).latency_s,
                        scenario.codec(a, b).name,
                        tuple(int(problem.out_bytes[u]) for u in tensors)))
    tier_seconds = {t: 0.0 for t in tiers}
    for v in range(first, len(names)):
        tier_seconds[tiers[labels[v]]] += side.compute_s[v][labels[v]]
    total = value if objective == "latency" and latency else evaluate(problem, labels)
    return_s = total - sum(tier_seconds.values()) - sum(h.seconds for h in hops)
    hosts = {t: None for t in scenario.tiers}
    hosts.update(dict(zip(tiers, route.hosts)))
    return Plan(
        model=scenario.hosts[0].profile.model, objective=objective, value=value, total_s=total,
        method=method, route=route,
        assignment={names[v]: tiers[labels[v]] for v in range(first, len(names))},
        hosts=hosts, tier_seconds=tier_seconds, hops=tuple(hops), return_s=max(0.0, return_s))
