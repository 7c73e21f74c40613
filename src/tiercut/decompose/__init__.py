"""One layer range on many nodes: the graph surgery that divides a run of nodes into parts
that run at once on several hosts, exactly (spatial tiles with halos, ``spatial.py``; output
channels, ``channels.py``), and the planner that decides how (``planner.py``)."""
from .rules import DecomposeError
from .spatial import Part, SpatialRun

__all__ = ["DecomposeError", "Part", "SpatialRun"]
