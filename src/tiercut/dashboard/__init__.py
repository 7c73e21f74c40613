"""A live view of a split run: a local web page with the cut across tiers, where each recent
request's time went, the bandwidth estimate against the plan's break-even rates, and the
latency timeline with plan switches.

``events.py`` (the events, plain JSON-able dicts, and their check), ``recorder.py`` (what a
late page is shown first), ``server.py`` (``Dashboard``: aiohttp on its own thread, server-sent
events), ``feed.py`` (``Feed``: a run's events to a Dashboard and/or a log), ``replay.py`` (the
log, read back and replayed), ``adaptive.py`` (``watch``: the adaptive client's plans and
estimates), ``static/`` (the page: HTML, CSS and a small canvas-drawing script, no library).

May import ``planner``, ``runtime``, ``adapt``; only ``cli`` imports it.
"""
from .events import EventError, check, estimate_event, plan_event, request_event, switch_event
from .feed import Feed
from .replay import EventLog, read_events, replay
from .server import Dashboard, DashboardError, check_port

__all__ = ["Dashboard", "DashboardError", "EventError", "EventLog", "Feed", "check",
           "check_port", "estimate_event", "plan_event", "read_events", "replay",
           "request_event", "switch_event"]
