"""Adapting the plan while it runs: bandwidth and load estimates (``uncertainty``: a rate
belief with its uncertainty, for the ``robust`` policy), plan costs, re-partitioning
policies (``policies/``, one per file) and a client that switches plans between requests.
Imports tiercut.planner, tiercut.runtime and tiercut.errors; never tiercut.sim (it imports adapt)."""
from .estimators import BandwidthEstimator, LatencyEstimator, LoadEstimator, Observation
from .policies import (POLICIES, AdaptivePolicy, DadsPolicy, FrameRateError, LoadAwarePolicy,
                       LyapunovPolicy, OraclePolicy, Policy, PolicyError, Setting, StaticPolicy,
                       build_policy, parse_policies)

__all__ = ["POLICIES", "AdaptivePolicy", "BandwidthEstimator", "DadsPolicy", "FrameRateError",
           "LatencyEstimator", "LoadAwarePolicy", "LoadEstimator", "LyapunovPolicy",
           "Observation", "OraclePolicy", "Policy", "PolicyError", "Setting", "StaticPolicy",
           "build_policy", "parse_policies"]
