"""tiercut.mobility: users that move among edge servers' cells, and where their edge stages live.

``world`` holds the geometry (edge servers with a radius, the backhaul between them, a radio
model or per-cell bandwidth traces), ``paths`` the movers (random waypoint, road, recorded
CSV), ``placement`` the policies that choose each user's serving edge server over time
(nearest, never-migrate, follow-me, mobility-aware, oracle, with optional pre-warming), and
``handover`` the simulation that costs every request of every user under a policy with a
per-user cut from the planner's decision table.

May import tiercut.graph, measure, planner, link and adapt (and tiercut.errors); nothing here
opens a socket or starts a server.
"""
