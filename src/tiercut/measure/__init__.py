"""What each host does with a graph: the profile format (``profile``), measuring it here
(``profiler``, ``host``, ``alloc``), profiles for hosts you do not have (``predict``), CPU
caps and pinning that make one machine play slower, separate hosts (``cpucap``), and plots.

Imports ``tiercut.graph`` and ``tiercut.errors`` only.
"""
from .predict import LatencyPredictor, scale_profile
from .profile import FORMAT, ModelInput, NodeProfile, Profile
from .profiler import ProfileSettings, profile_graph, profile_model

__all__ = ["FORMAT", "LatencyPredictor", "ModelInput", "NodeProfile", "Profile",
           "ProfileSettings", "profile_graph", "profile_model", "scale_profile"]
