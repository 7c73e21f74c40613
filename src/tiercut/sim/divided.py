"""A divided plan (``decompose.plan_with_division``) as the simulator's cost steps.

``plan_cost`` sees a plan's nodes on one host each; a divided run is on several at once. Here
the coordinator's compute step is split around the run: the coordinator's nodes before the
run, a FORK whose parts run at once (each part: its source crop over the coordinator's link
to its host, its rows computed there, its output back; the coordinator's own part on its own
processor), then the coordinator's nodes after the run. Every part holds its host's processor
and links first come, first served, so requests that overlap queue on the peers as they do on
the coordinator. With nothing queued the steps add up to the divided plan's ``total_s``.
"""
from __future__ import annotations

import dataclasses

from ..adapt.costs import CPU, FIXED_LINK, FORK, Costs, PlanCost, plan_cost
from ..decompose.planner import DividedPlan, Worker, part_terms
from ..planner.scenario import Scenario


def divided_cost(scenario: Scenario, d: DividedPlan) -> PlanCost:
    """The cost steps of ``d.plan`` with its run divided (``plan_cost`` when nothing is)."""
    base = plan_cost(scenario, d.plan)
    if d.run is None or d.division is None or d.rows is None:
        return base
    c = scenario.host(d.coordinator)
    position = {n.name: i for i, n in enumerate(c.profile.nodes)}  # topological order
    first, last = position[d.run[0]], position[d.run[1]]
    seconds = {v: c.profile.node(v).latency_s * c.load for v in position
               if d.plan.assignment.get(v) == c.tier}
    before = sum(s for v, s in seconds.items() if position[v] < first)
    after = sum(s for v, s in seconds.items() if position[v] > last)
    edges = [0, *d.division.bounds, d.rows.height]
    parts = []
    for name, a, b in zip(d.division.workers, edges, edges[1:]):
        h = scenario.host(name)
        worker = Worker(h.name, {v: h.profile.node(v).latency_s * h.load for v in d.rows.names})
        compute, up, down = part_terms(d.rows, worker, a, b)
        if h is c:
            parts.append(((CPU, f"cpu:{h.name}", compute, 0.0, 0.0),))
            continue
        there, back = scenario.link(c, h), scenario.link(h, c)
        parts.append((
            (FIXED_LINK, f"link:{c.name}->{h.name}", there.latency_s, up * 8.0,
             up * there.seconds_per_byte),
            (CPU, f"cpu:{h.name}", compute, 0.0, 0.0),
            (FIXED_LINK, f"link:{h.name}->{c.name}", back.latency_s, down * 8.0,
             down * back.seconds_per_byte)))
    fork = f"fork:{c.name}"
    steps = []
    for step in base.steps:
        if step[0] == CPU and step[1] == f"cpu:{c.name}":
            steps += [(CPU, step[1], before, 0.0, 0.0), (FORK, fork, 0.0, 0.0, 0.0),
                      (CPU, step[1], after, 0.0, 0.0)]
        else:
            steps.append(step)
    return dataclasses.replace(base, steps=tuple(steps), forks={fork: tuple(parts)},
                               cut=f"{base.cut} (divided {d.run[0]}..{d.run[1]} across "
                                   f"{len(d.division.workers)})")


def register_divided(costs: Costs, d: DividedPlan) -> PlanCost:
    """Make ``costs`` (the simulator's) price ``d.plan`` with its run divided."""
    cost = divided_cost(costs.scenario, d)
    costs.register(d.plan, cost)
    return cost
