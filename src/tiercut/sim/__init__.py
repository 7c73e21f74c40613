"""A trace-driven discrete-event simulator of split inference under re-partitioning policies."""
from .simulator import Arrivals, RunResult, SimError, Simulator, parse_arrivals, parse_duration

__all__ = ["Arrivals", "RunResult", "SimError", "Simulator", "parse_arrivals", "parse_duration"]
