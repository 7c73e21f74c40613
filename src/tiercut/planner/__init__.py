"""Where to cut: scenarios, the cost model, exact placement algorithms and plans.

Imports only ``tiercut.measure`` (the profile format), ``tiercut.codecs`` (calibration tables,
for the joint cut and codec choice in ``compress``) and ``tiercut.errors``; never the runtime,
link, adapt, sim or the command line.

Planners are pure functions over plain data: a Scenario (tiers, hosts with profiles, links)
and Constraints in, a Plan out. Only ``load_scenario`` reads files (a scenario and the profiles
it names); the algorithms never do, and profiling a model for a plan is the command line's work
(``tiercut.cli.plan_flags``).
"""
from .build import Constraints
from .plan import Hop, Plan
from .scenario import Host, Link, Scenario, ScenarioError, load_scenario, parse_link
from .solve import InfeasibleError, baseline, plan

__all__ = ["Constraints", "Hop", "Host", "InfeasibleError", "Link", "Plan", "Scenario",
           "ScenarioError", "baseline", "load_scenario", "parse_link", "plan"]

from .._moved import install as _install_moved

_install_moved(__name__)  # the 0.1.0 module paths, for one release
