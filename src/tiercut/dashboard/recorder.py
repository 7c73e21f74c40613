"""What a page that opens late is shown first: the plans seen so far and the recent history.

Plain data, no locks: the server touches it from its event loop only.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

HISTORY = 600  # requests, estimates and switches kept for late joiners
PLANS = 32  # plans kept (a policy switching among a decision table's few plans fits)


class Recorder:
    def __init__(self, history: int = HISTORY, plans: int = PLANS):
        self.plans: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.max_plans = plans

    def add(self, event: dict[str, Any]) -> None:
        if event["type"] == "plan":
            self.plans.pop(event["id"], None)  # the newest version, last
            self.plans[event["id"]] = event
            while len(self.plans) > self.max_plans:
                self.plans.popitem(last=False)
        else:
            self.history.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every event a new page needs, in an order it can replay: plans first."""
        return [*self.plans.values(), *self.history]
