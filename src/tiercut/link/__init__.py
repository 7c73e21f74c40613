"""Emulated network links between processes on one machine, and the bandwidth traces that
drive them. Imports ``tiercut.errors`` and the planner's rate and delay parsers only.

- ``ShapingProxy``: a userspace TCP proxy with a token bucket and a one-way delay per direction
  (no root); ``ShapingProxy.in_thread`` for synchronous code; trace replay.
- ``BandwidthTrace`` / ``load_trace``: bandwidth over time from pensieve-cooked or G-NetTrack
  files.
- ``NamespaceLink``: two network namespaces joined by a tbf-shaped veth pair (root only;
  ``netns.available()`` says whether it can run).
"""
from .netns import NamespaceError, NamespaceLink
from .shaper import LinkError, ShapingProxy, check_delay, check_rate, parse_address
from .traces import BandwidthTrace, BandwidthTraceError, TraceFileError, load_trace

__all__ = ["BandwidthTrace", "BandwidthTraceError", "LinkError", "NamespaceError",
           "NamespaceLink", "ShapingProxy", "TraceFileError", "check_delay", "check_rate",
           "load_trace", "parse_address"]
