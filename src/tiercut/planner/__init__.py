"""Where to cut: scenarios, the cost model, exact placement algorithms and plans.

Planners are pure functions over plain data: a Scenario (tiers, hosts with profiles, links)
and Constraints in, a Plan out. Nothing here opens a file or a socket except
``load_scenario``.
"""
from .build import Constraints
from .plan import Hop, Plan
from .scenario import Host, Link, Scenario, ScenarioError, load_scenario, parse_link
from .solve import InfeasibleError, baseline, plan

__all__ = ["Constraints", "Hop", "Host", "InfeasibleError", "Link", "Plan", "Scenario",
           "ScenarioError", "baseline", "load_scenario", "parse_link", "plan"]
