"""A trace-driven discrete-event simulator of split inference under re-partitioning policies:
the adaptive policies of ``tiercut.adapt`` over ``tiercut.link`` traces, at scale and without
processes; a divided run's parts at once on their hosts (``divided``). Imports
``tiercut.planner``, ``tiercut.link``, ``tiercut.adapt``, ``tiercut.decompose`` and
``tiercut.errors``; nothing but the command line imports it.
"""
from .simulator import Arrivals, RunResult, SimError, Simulator, parse_arrivals, parse_duration

__all__ = ["Arrivals", "RunResult", "SimError", "Simulator", "parse_arrivals", "parse_duration"]

from .._moved import install as _install_moved

_install_moved(__name__)  # the 0.1.0 module paths, for one release
