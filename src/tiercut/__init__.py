"""tiercut: run one neural network across device, edge and cloud, cut where it is fastest.

The data flow: ``trace`` a model into a Graph, ``profile_model`` it on each host into a
Profile, and ``split`` the graph by a node-to-stage assignment into Stages.
"""
from .errors import (AssignmentError, ExampleInputError, GraphError, ProfileError, TiercutError,
                     TraceError, UnknownModelError)
from .graph.dag import Graph, Node, TensorMeta
from .graph.split import Stage, run_stages, split
from .graph.trace import trace
from .measure.predict import LatencyPredictor, scale_profile
from .measure.profile import NodeProfile, Profile
from .measure.profiler import ProfileSettings, profile_model
from ._moved import install as _install_moved

__version__ = "0.1.0"

__all__ = [
    "AssignmentError", "ExampleInputError", "Graph", "GraphError", "LatencyPredictor", "Node",
    "NodeProfile",
    "Profile", "ProfileError", "ProfileSettings", "Stage", "TensorMeta", "TiercutError",
    "TraceError", "UnknownModelError", "profile_model", "run_stages", "scale_profile", "split",
    "trace",
]

_install_moved(__name__)  # the 0.1.0 module paths, for one release
