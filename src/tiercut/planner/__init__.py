"""Where to cut: scenarios, the cost model, exact placement algorithms and plans.

Planners are pure functions over plain data: a Scenario (tiers, hosts with profiles, links)
and Constraints in, a Plan out. Only ``load_scenario`` and the command-line glue in
``flags.py`` read files (or profile a model); the algorithms never do.
"""
from .build import Constraints
from .plan import Hop, Plan
from .scenario import Host, Link, Scenario, ScenarioError, load_scenario, parse_link
from .solve import InfeasibleError, baseline, plan

__all__ = ["Constraints", "Hop", "Host", "InfeasibleError", "Link", "Plan", "Scenario",
           "ScenarioError", "baseline", "load_scenario", "parse_link", "plan"]
