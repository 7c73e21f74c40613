"""Mobility: users walking or driving between edge servers, and where their edge stage lives.

``world`` holds cells, the radio and the backhaul, ``traces`` per-cell bandwidth traces,
``paths`` the user trajectories, ``cuts`` the splits from a planner's decision table,
``policies`` the mobility-aware rule, ``handover`` a time-stepped simulator of
stage-migration policies (nearest, never, aware, oracle), with server outages.
Pure numpy; may import only numpy, ``tiercut.errors`` and tiercut.{graph, measure, planner,
link, adapt}.
"""
from tiercut.mobility.world import EdgeServer, Radio, World
from tiercut.mobility.traces import CellTraces
from tiercut.mobility.paths import random_waypoint, recorded, recorded_users, road
from tiercut.mobility.policies import AwareRule
from tiercut.mobility.handover import POLICIES, Workload, compare, simulate
from tiercut.mobility.cuts import workloads_from_table

__all__ = ["EdgeServer", "Radio", "World", "CellTraces", "random_waypoint", "road",
           "recorded", "recorded_users", "AwareRule", "POLICIES", "Workload", "simulate",
           "compare", "workloads_from_table"]
