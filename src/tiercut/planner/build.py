"""From a Scenario to Problems: which routes exist, and each route's arrays.

Routes enumerate which tiers the data passes through (the device always) and which candidate
host serves each; the min-cut and the other exact algorithms then solve one route at a time.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Iterator

from .privacy import Spec, check_private, private_indices
from .problem import INF, Problem, Route, Side
from .scenario import Host, Scenario, ScenarioError

OBJECTIVES = ("latency", "throughput", "energy")


@dataclass(frozen=True)
class Constraints:
    pin: dict[str, str] = field(default_factory=dict)  # node -> tier it must run on
    forbid: tuple[tuple[str, str], ...] = ()  # (node, tier) pairs it must not run on
    use_tiers: tuple[str, ...] = ()  # tiers that must run at least one node
    skip_tiers: tuple[str, ...] = ()  # tiers that must run nothing (data may not pass either)
    only_hosts: tuple[str, ...] = ()  # if given, use only these hosts
    never_hosts: tuple[str, ...] = ()
    max_bytes: dict[str, float] = field(default_factory=dict)  # "a-b" (tiers) -> bytes per request
    max_seconds: dict[str, float] = field(default_factory=dict)  # tier -> compute seconds
    max_share: dict[str, float] = field(default_factory=dict)  # tier -> fraction of the total
    # the model input never crosses a hop: it, its readers and the first N nodes (or a named
    # node), with their ancestors, are pinned to the device (see privacy.py); None: the
    # scenario's own private_input, if any
    private_input: Spec | None = None

    def check_names(self, scenario: Scenario, node_names: set[str]) -> None:
        hosts = [h.name for h in scenario.hosts]
        if self.private_input is not None:
            check_private(self.private_input, [n.name for n in scenario.hosts[0].profile.nodes])
        for node in [*self.pin, *(n for n, _ in self.forbid)]:
            if node not in node_names:
                sample = sorted(node_names)[:8]
                raise ScenarioError(f"constraint names unknown node {node!r}; nodes are e.g. {sample}")
        for tier in [*self.pin.values(), *(t for _, t in self.forbid), *self.use_tiers,
                     *self.skip_tiers, *self.max_seconds, *self.max_share]:
            scenario.tier_index(tier)
        for host in [*self.only_hosts, *self.never_hosts]:
            if host not in hosts:
                raise ScenarioError(f"constraint names unknown host {host!r}; hosts are {hosts}")
        for hop in self.max_bytes:
            a, _, b = hop.partition("-")
            scenario.tier_index(a), scenario.tier_index(b)


def routes(scenario: Scenario, constraints: Constraints = Constraints()) -> Iterator[Route]:
    """Every chain of used tiers starting at the device, with every allowed host choice."""
    tiers = scenario.tiers
    skipped = {scenario.tier_index(t) for t in constraints.skip_tiers}
    required = {scenario.tier_index(t) for t in constraints.use_tiers}
    optional = [i for i in range(1, len(tiers)) if i not in skipped]
    for r in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, r):
            used = (0, *chosen)
            if not required <= set(used):
                continue
            choices = [_allowed_hosts(scenario, tiers[t], constraints) for t in used]
            for hosts in itertools.product(*choices):
                yield Route(used, tuple(h.name for h in hosts))


def _allowed_hosts(scenario: Scenario, tier: str, c: Constraints) -> list[Host]:
    return [h for h in scenario.hosts_of(tier)
            if (not c.only_hosts or h.name in c.only_hosts) and h.name not in c.never_hosts]


@dataclass(frozen=True)
class GraphArrays:
    """What every route of one scenario shares: the graph as index arrays."""

    names: tuple[str, ...]  # model inputs first, then the profile's nodes
    preds: tuple[tuple[int, ...], ...]
    out_bytes: tuple[float, ...]
    n_inputs: int
    returned: tuple[int, ...]  # indices of the model's outputs


def graph_arrays(scenario: Scenario) -> GraphArrays:
    profile = scenario.hosts[0].profile
    inputs = [i.name for i in profile.inputs] or ["input"]
    input_bytes = [i.bytes for i in profile.inputs] or [profile.input_bytes]
    if scenario.input_bytes is not None:  # the whole model input has the given size
        input_bytes = [scenario.input_bytes] + [0] * (len(inputs) - 1)
    names = (*inputs, *(n.name for n in profile.nodes))
    index = {name: i for i, name in enumerate(names)}
    everything = tuple(range(len(inputs)))  # a node with no inputs reads the whole model input
    preds = ((),) * len(inputs) + tuple(
        tuple(index[s] for s in n.inputs) if n.inputs else everything for n in profile.nodes)
    out_bytes = tuple(float(b) for b in (*input_bytes, *(n.output_bytes for n in profile.nodes)))
    return GraphArrays(names, preds, out_bytes, len(inputs), tuple(index[o] for o in profile.outputs))


def build(scenario: Scenario, route: Route, objective: str = "latency",
          constraints: Constraints = Constraints(),
          graph: GraphArrays | None = None) -> tuple[Problem, Side]:
    """The route's Problem, and the side constraints only the integer program carries."""
    if objective not in OBJECTIVES:
        raise ScenarioError(f"objective {objective!r} is not one of {OBJECTIVES} here")
    g = graph or graph_arrays(scenario)
    hosts = [scenario.host(name) for name in route.hosts]
    m, first = len(route.tiers), g.n_inputs
    fwd = [scenario.link(hosts[i - 1], hosts[i]) for i in range(1, m)]
    back = [scenario.link(hosts[i], hosts[i - 1]) for i in range(1, m)]
    # Latency weighs every second 1; device energy weighs device compute by its compute power,
    # the device's own hop by its radio power, and everything else 0. Throughput keeps the
    # latency problem (for the plan's breakdown and to break ties); its bottleneck reads the
    # per-stage seconds from the problem and the side.
    device = hosts[0]
    energy = objective == "energy"
    compute_w = [device.compute_power_w if label == 0 else 0.0 for label in range(m)] \
        if energy else [1.0] * m
    hop_w = [0.0] + ([device.radio_power_w if i == 1 else 0.0 for i in range(1, m)]
                     if energy else [1.0] * (m - 1))
    per_byte = [0.0] + [scenario.seconds_per_byte(hosts[i - 1], hosts[i]) * hop_w[i]
                        for i in range(1, m)]
    back_s = [0.0]  # cost per byte of a reply computed at each label, back to the device
    for i in range(1, m):
        back_s.append(back_s[-1] + scenario.seconds_per_byte(hosts[i], hosts[i - 1]) * hop_w[i])
    latencies = [[0.0] * first + [n.latency_s * h.load for n in h.profile.nodes] for h in hosts]
    columns = [[lat * compute_w[label] for lat in latencies[label]] for label in range(m)]
    if scenario.return_outputs:
        for v in g.returned:
            for label in range(m):
                columns[label][v] += g.out_bytes[v] * back_s[label]
    for label in range(1, m):  # the model's inputs start on the device
        columns[label][:first] = [INF] * first
    tiers = [scenario.tiers[t] for t in route.tiers]
    index = {name: i for i, name in enumerate(g.names)}
    device_tier = scenario.tiers[0]
    private = private_indices(constraints.private_input, g.names, g.preds, first)
    for node, tier in [*constraints.pin.items(), *((g.names[v], device_tier) for v in private)]:
        for label in range(m):
            if tiers[label] != tier:
                columns[label][index[node]] = INF
    for node, tier in constraints.forbid:
        if tier in tiers:
            columns[tiers.index(tier)][index[node]] = INF
    if device_tier in constraints.skip_tiers:  # the input starts there, but no node may run there
        columns[0][first:] = [INF] * (len(g.names) - first)
    constant = sum(hop_w[i] * fwd[i - 1].latency_s for i in range(1, m)) * (not energy)
    if scenario.return_outputs and not energy:
        constant += sum(link.latency_s for link in back)
    problem = Problem(g.names, g.preds, g.out_bytes, tuple(zip(*columns)), tuple(per_byte),
                      constant, n_inputs=first)
    side = _side(scenario, route, constraints, hosts, latencies, first)
    side = dataclasses.replace(
        side, back_per_byte=(0.0, *(scenario.seconds_per_byte(hosts[i], hosts[i - 1])
                                    for i in range(1, m))),
        returned=g.returned if scenario.return_outputs else ())
    return problem, side


def _side(scenario: Scenario, route: Route, c: Constraints, hosts: list[Host],
          latencies: list[list[float]], n_inputs: int) -> Side:
    profile = hosts[0].profile
    tiers = [scenario.tiers[t] for t in route.tiers]
    label = {tier: i for i, tier in enumerate(tiers)}
    compute_s = tuple(zip(*latencies))
    params = [0.0] * n_inputs + [float(n.param_bytes) for n in profile.nodes]
    max_bytes = []
    for hop, cap in c.max_bytes.items():
        a, _, b = hop.partition("-")
        for i in range(1, len(tiers)):
            if (tiers[i - 1], tiers[i]) == (a, b):
                max_bytes.append((i, float(cap)))
    return Side(
        compute_s=compute_s, param_bytes=tuple(params), max_bytes=tuple(max_bytes),
        max_seconds=tuple((label[t], float(s)) for t, s in c.max_seconds.items() if t in label),
        max_share=tuple((label[t], float(s)) for t, s in c.max_share.items() if t in label),
        max_memory=tuple((i, float(h.memory_bytes)) for i, h in enumerate(hosts)
                         if h.memory_bytes is not None),
        min_nodes=tuple(label[t] for t in c.use_tiers if t in label))
