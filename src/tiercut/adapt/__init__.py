"""Adaptation: live estimates of bandwidth and load, policies that re-plan from them, and a
client that switches plans between requests."""
from .estimators import BandwidthEstimator, LatencyEstimator, LoadEstimator, Observation
from .policies import (POLICIES, AdaptivePolicy, DadsPolicy, FrameRateError, LoadAwarePolicy,
                       LyapunovPolicy, OraclePolicy, Policy, PolicyError, Setting, StaticPolicy,
                       build_policy, parse_policies)

__all__ = ["POLICIES", "AdaptivePolicy", "BandwidthEstimator", "DadsPolicy", "FrameRateError",
           "LatencyEstimator", "LoadAwarePolicy", "LoadEstimator", "LyapunovPolicy",
           "Observation", "OraclePolicy", "Policy", "PolicyError", "Setting", "StaticPolicy",
           "build_policy", "parse_policies"]
