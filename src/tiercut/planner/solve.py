"""The planner's front door: try every route, solve each with the fastest exact method.

Chains go to dynamic programming, DAGs to the K-tier min-cut, and constraints min-cut cannot
carry (bytes per hop, seconds or share per tier, memory, tiers that must be used) to the
integer program. The plan says which method answered.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from . import brute, chain
from .build import Constraints, build, graph_arrays, routes
from .plan import Plan, describe
from .privacy import describe_prefix, memory_floor, memory_message, private_indices
from .problem import INF, Problem, Route, Side, evaluate, memory_use, side_violations
from .scenario import Scenario, ScenarioError

METHODS = ("auto", "chain", "mincut", "milp", "brute")


class InfeasibleError(ScenarioError):
    """No placement honours every constraint; the message names a conflicting set."""


def _solver(name: str, objective: str = "latency") -> Callable[..., tuple[float, tuple[int, ...]]]:
    if objective == "throughput":  # the slowest stage: the integer program, or brute force
        from . import milp
        return brute.solve_bottleneck if name == "brute" else milp.solve_bottleneck
    if name == "mincut":
        from . import mincut
        return lambda p, s: mincut.solve(p)
    if name == "milp":
        from . import milp
        return milp.solve
    if name == "chain":
        return lambda p, s: chain.solve(p, s.min_nodes)
    return brute.solve


def pick_method(problem: Problem, side: Side, objective: str = "latency") -> str:
    if objective == "throughput":
        return "milp"
    only_required = side.empty or dataclasses.replace(side, min_nodes=()).empty
    if only_required and chain.is_chain(problem):
        return "chain"  # the chain DP carries required tiers exactly
    return "mincut" if side.empty else "milp"


def plan(scenario: Scenario, objective: str = "latency", constraints: Constraints = Constraints(),
         method: str = "auto") -> Plan:
    if method not in METHODS:
        raise ScenarioError(f"method {method!r} is not one of {METHODS}")
    profile = scenario.hosts[0].profile
    constraints = _with_privacy(scenario, constraints)
    constraints.check_names(scenario, {n.name for n in profile.nodes})
    best = best_plan(scenario, objective, constraints, method)
    if best is None:  # the scenario's own private_input now lives in the constraints
        scenario = dataclasses.replace(scenario, private_input=None)
        raise InfeasibleError(_conflict(scenario, objective, constraints))
    return best


def _with_privacy(scenario: Scenario, c: Constraints) -> Constraints:
    """The constraints with the scenario's private_input, unless they give their own."""
    if c.private_input is None and scenario.private_input is not None:
        return dataclasses.replace(c, private_input=scenario.private_input)
    return c


def best_plan(scenario: Scenario, objective: str = "latency",
              constraints: Constraints = Constraints(), method: str = "auto",
              min_hops: int = 0) -> Plan | None:
    """``plan`` without the checks and the diagnosis: None when nothing is feasible. Routes
    with fewer than ``min_hops`` hops are skipped."""
    constraints = _with_privacy(scenario, constraints)
    graph = graph_arrays(scenario)
    best: tuple = ((INF, INF), None, (), "", None)
    for route in routes(scenario, constraints):
        if len(route.tiers) - 1 < min_hops:
            continue
        problem, side = build(scenario, route, objective, constraints, graph)
        name = pick_method(problem, side, objective) if method == "auto" else method
        if objective == "throughput" and name not in ("milp", "brute"):
            raise ScenarioError(f"the throughput objective is solved by 'milp' or 'brute', "
                                f"not {name!r}")
        if name == "chain" and not chain.is_chain(problem):
            raise ScenarioError("method 'chain' needs a chain: every node reading the one before")
        value, labels = _solver(name, objective)(problem, side)
        if name != "milp" and labels and side_violations(problem, side, labels):
            name = "milp"  # the fast answer breaks a side constraint: solve it exactly
            value, labels = _solver(name, objective)(problem, side)
        # ties (a stream's bottleneck often is) go to the lower latency of one request
        key = (value, evaluate(problem, labels) if objective == "throughput" and labels else 0.0)
        if value < INF and key < best[0]:
            best = (key, route, labels, name, (problem, side) if objective != "energy" else None)
    (value, _), route, labels, name, latency = best
    if route is None:
        return None
    private = tuple(graph.names[v] for v in private_indices(
        constraints.private_input, graph.names, graph.preds, graph.n_inputs))
    return dataclasses.replace(describe(scenario, route, labels, objective, value, name, latency),
                               private=private)


def baseline(scenario: Scenario, tier: str) -> Plan:
    """Everything on one tier (its first candidate host): all-device, all-cloud."""
    t = scenario.tier_index(tier)
    host = scenario.hosts_of(tier)
    if not host:
        raise ScenarioError(f"tier {tier!r} has no host")
    route = Route((0,), (host[0].name,)) if t == 0 else Route(
        (0, t), (scenario.hosts_of(scenario.tiers[0])[0].name, host[0].name))
    problem, _ = build(scenario, route)
    labels = [0] * problem.n_inputs + [len(route.tiers) - 1] * (len(problem.names) - problem.n_inputs)
    return describe(scenario, route, labels, "latency", 0.0, f"all-{tier}")


def _items(c: Constraints) -> list[tuple[str, tuple]]:
    items: list[tuple[str, tuple]] = [("pin", kv) for kv in c.pin.items()]
    items += [("forbid", f) for f in c.forbid]
    items += [("use_tiers", (t,)) for t in c.use_tiers]
    items += [("skip_tiers", (t,)) for t in c.skip_tiers]
    items += [("max_bytes", kv) for kv in c.max_bytes.items()]
    items += [("max_seconds", kv) for kv in c.max_seconds.items()]
    items += [("max_share", kv) for kv in c.max_share.items()]
    items += [("only_hosts", tuple(c.only_hosts))] if c.only_hosts else []
    items += [("never_hosts", (h,)) for h in c.never_hosts]
    items += [("private_input", (c.private_input,))] if c.private_input is not None else []
    return items


def _from_items(items: list[tuple[str, tuple]]) -> Constraints:
    fields: dict = {"pin": {}, "forbid": (), "use_tiers": (), "skip_tiers": (), "max_bytes": {},
                    "max_seconds": {}, "max_share": {}, "only_hosts": (), "never_hosts": (),
                    "private_input": None}
    for kind, value in items:
        if kind == "private_input":
            fields[kind] = value[0]
        elif isinstance(fields[kind], dict):
            fields[kind] = {**fields[kind], value[0]: value[1]}
        elif kind == "forbid":
            fields[kind] = (*fields[kind], value)
        else:
            fields[kind] = (*fields[kind], *value)
    return Constraints(**fields)


def _conflict(scenario: Scenario, objective: str, c: Constraints) -> str:
    """A minimal set of constraints that cannot hold together (a deletion filter)."""
    kept = _items(c)
    for item in list(kept):
        trial = [i for i in kept if i != item]
        if best_plan(scenario, objective, _from_items(trial)) is None:
            kept = trial  # still infeasible without it: not part of the conflict
    if not kept:
        return "no placement is possible: the scenario has no route from the device"
    words = ", ".join(f"{kind} {'='.join(map(str, value))}" for kind, value in kept)
    if any(kind == "private_input" for kind, _ in kept):
        return _private_conflict(scenario, objective, c, words)
    return f"these constraints cannot all hold: {words}"


def _private_conflict(scenario: Scenario, objective: str, c: Constraints, words: str) -> str:
    """Why the private prefix cannot stay on the device; when the device's memory cap is why,
    the least device memory that would do (exact when the prefix alone is the reason)."""
    g = graph_arrays(scenario)
    private = private_indices(c.private_input, g.names, g.preds, g.n_inputs)
    prefix = describe_prefix([g.names[v] for v in private])
    caps = [(h.name, h.memory_bytes) for h in scenario.hosts_of(scenario.tiers[0])
            if h.memory_bytes is not None]
    if caps:
        found = best_plan(_device_memory(scenario, None), objective, c)
        if found is not None:  # with room enough on the device it is feasible
            problem, side = build(scenario, found.route, objective, c, g)
            floor = memory_floor(g.out_bytes, side.param_bytes, g.n_inputs, private)
            exact = best_plan(_device_memory(scenario, floor), objective, c) is not None
            tiers = [scenario.tiers[t] for t in found.route.tiers]
            labels = [0] * g.n_inputs + [tiers.index(found.assignment[n])
                                         for n in g.names[g.n_inputs:]]
            enough = memory_use(problem, side, labels)[0]
            return memory_message(caps, c.private_input, prefix, floor, exact, enough)
    return (f"these constraints cannot all hold: {words} (private_input {c.private_input} keeps "
            f"the input and {prefix} on the device)")


def _device_memory(scenario: Scenario, cap: float | None) -> Scenario:
    """``scenario`` with every capped device host's memory cap set to ``cap``."""
    device = scenario.tiers[0]
    hosts = tuple(dataclasses.replace(h, memory_bytes=None if cap is None else int(math.ceil(cap)))
                  if h.tier == device and h.memory_bytes is not None else h
                  for h in scenario.hosts)
    return dataclasses.replace(scenario, hosts=hosts)

