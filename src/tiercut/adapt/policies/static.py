"""``static``: the best plan at start (Neurosurgeon), never changed."""
from __future__ import annotations

from ...planner.plan import Plan
from .base import Policy


class StaticPolicy(Policy):
    name = "static"

    def __init__(self, plan: Plan):
        self.plan = plan

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        return self.plan
