"""``Feed``: where a run's events go, a Dashboard, an EventLog, or both, and what the
commands that take ``--dashboard PORT`` share: one ``t`` for both, each plan sent once."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..runtime.measurement import Measurement
from . import events
from .replay import EventLog
from .server import Dashboard


class Feed:
    def __init__(self, dashboard: Dashboard | None = None, log: EventLog | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.dashboard, self.log = dashboard, log
        self.clock, self._t0 = clock, clock()
        self._lock = threading.Lock()  # a bench publishes from the client's loop thread
        self._plans: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, port: Any = None, log_path: Path | None = None,
             say: Callable[[str], None] = print) -> "Feed | None":
        """A Feed for ``--dashboard PORT`` and ``--dashboard-log FILE`` (None: neither given).
        A bad port raises DashboardError before anything starts."""
        if port is None and log_path is None:
            return None
        dashboard = None
        if port is not None:
            dashboard = Dashboard()
            say(f"dashboard: {dashboard.start(port)} (this machine only)")
        return cls(dashboard, EventLog(log_path) if log_path else None)

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            event = events.check({**event, "t": event.get("t", self.clock() - self._t0)})
            if self.dashboard:
                self.dashboard.publish(event)
            if self.log:
                self.log.publish(event)
        return event

    def plan(self, plan: Any, label: str = "", **details: Any) -> str:
        """Publish ``plan`` (see ``events.plan_event``) unless it was already; its id."""
        event = events.plan_event(plan, label, **details)
        if self._plans.get(event["id"]) != event:
            self._plans[event["id"]] = event
            self.publish(event)
        return event["id"]

    def request(self, m: Measurement, plan_id: str) -> None:
        self.publish(events.request_event(m, plan_id))

    def estimate(self, bps: float, source: str = "estimate") -> None:
        self.publish(events.estimate_event(bps, source))

    def switch(self, old: str, new: str) -> None:
        self.publish(events.switch_event(old, new))

    def close(self) -> None:
        if self.dashboard:
            self.dashboard.stop()
        if self.log:
            self.log.close()

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
