"""Mobility: users walking or driving between edge servers, and where their edge stage lives.

``world`` holds cells and the radio, ``paths`` the user trajectories, ``handover`` a
time-stepped simulator of stage-migration policies (nearest, never, aware, oracle).
Pure numpy; may import only numpy, ``tiercut.errors`` and ``tiercut.link``.
"""
from tiercut.mobility.world import EdgeServer, Radio, World
from tiercut.mobility.paths import random_waypoint, road, recorded
from tiercut.mobility.handover import POLICIES, Workload, simulate, compare

__all__ = ["EdgeServer", "Radio", "World", "random_waypoint", "road", "recorded",
           "POLICIES", "Workload", "simulate", "compare"]
