"""Many devices, one stream: placing a pipeline of model stages on a cluster for throughput.

``Cluster`` (nodes, a link matrix, a shared medium, source and sink) is plain data read by
``load_cluster``; ``plan_cluster`` returns the ``ClusterPlan`` of most frames per second
(stages, the nodes holding each, the cuts, the predicted figures) by an exhaustive search, a
particle swarm or the fixed-order chain baseline; ``marginal_nodes`` says whether adding a
node helps. Imports graph, measure and planner only (the layout allows zoo and decompose too).
"""
from .load import cluster_from_dict, load_cluster, parse_bytes
from .plan import ClusterPlan, Stage
from .scenario import Cluster, ClusterError, ClusterNode, Medium
from .solve import METHODS, Marginal, least_memory, marginal_nodes, plan_cluster
from .solvers.swarm import SwarmSettings

__all__ = ["Cluster", "ClusterError", "ClusterNode", "ClusterPlan", "METHODS", "Marginal",
           "Medium", "Stage", "SwarmSettings", "cluster_from_dict", "least_memory",
           "load_cluster", "marginal_nodes", "parse_bytes", "plan_cluster"]
