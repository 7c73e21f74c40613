"""Many users on shared edge servers: each user's cut and server chosen under load.

``options`` turns a device/edge scenario's decision table into cut options (the plans best
for some bandwidth and edge load), ``users`` holds the users (unique ids, rates, device
speeds) and moves them, ``edges`` the servers, their cells and the rates, ``controllers`` the
choice of cut and server (nearest, load-aware, drift-plus-penalty), ``simulate`` the slotted
queues. May import numpy, tiercut.errors, tiercut.planner, tiercut.link and tiercut.mobility.
"""
from tiercut.fleet.controllers import (CONTROLLERS, DriftPlusPenalty, LoadAware, Nearest,
                                       NearestLoadAware, controller)
from tiercut.fleet.edges import Cloud, Edges
from tiercut.fleet.options import CutOption, options_for, options_from_table
from tiercut.fleet.simulate import Fleet, Result, run
from tiercut.fleet.users import DuplicateUserError, Users, Walkers, check_ids

__all__ = ["CONTROLLERS", "DriftPlusPenalty", "LoadAware", "Nearest", "NearestLoadAware",
           "controller", "Cloud", "Edges", "CutOption", "options_for", "options_from_table", "Fleet", "Result", "run",
           "DuplicateUserError", "Users", "Walkers", "check_ids"]
