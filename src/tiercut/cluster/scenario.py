"""A cluster: many nodes, the links between every pair, a shared medium, a source and a sink.

The device/edge/cloud ``planner.Scenario`` orders its tiers; a cluster does not: any node may
hold any stage, and frames may take any route between them. What a pipeline planner needs of
each node is its profile (measured, or a reference profile scaled by a ``speed`` factor), its
memory and its power; of each pair of nodes, the rate and one-way delay of the link between
them. A shared medium (one Wi-Fi channel) is a rate that every transfer between the nodes on
it splits. Plain frozen data: the planners read it and open nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ..errors import TiercutError
from ..measure.predict import scale_profile
from ..measure.profile import Profile
from ..planner.scenario import Link


class ClusterError(TiercutError, ValueError):
    """A cluster that cannot be planned on: unknown names, a missing link, mixed models, no
    placement that fits the memory caps. The message names the node or pair."""


@dataclass(frozen=True)
class ClusterNode:
    """One machine. ``profile``: its own measurements; without one, the cluster's reference
    profile divided by ``speed`` (2 = twice as fast as the reference host)."""

    name: str
    profile: Profile | None = None
    speed: float = 1.0
    memory_bytes: int | None = None  # weights and activations of the stage it holds, at most
    power_w: float = 0.0  # while computing, for the energy per frame
    # seconds of this node's time per byte it receives or sends: moving a frame's tensors
    # (sockets, RPC framing, copies) takes the same processor as computing; 0: not charged
    wire_s_per_byte: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "-" in self.name:
            raise ClusterError(f"node name {self.name!r}: a non-empty name without '-' "
                               "(link keys are 'A-B')")
        if isinstance(self.speed, bool) or not isinstance(self.speed, (int, float)) \
                or not math.isfinite(self.speed) or self.speed <= 0:
            raise ClusterError(f"node {self.name!r}: speed must be a number > 0, got "
                               f"{self.speed!r}")
        if self.memory_bytes is not None and (isinstance(self.memory_bytes, bool) or not
                                              isinstance(self.memory_bytes, int)
                                              or self.memory_bytes <= 0):
            raise ClusterError(f"node {self.name!r}: memory must be a number of bytes > 0 "
                               f"(or left out), got {self.memory_bytes!r}")
        if not (isinstance(self.power_w, (int, float)) and math.isfinite(self.power_w)
                and self.power_w >= 0):
            raise ClusterError(f"node {self.name!r}: power_w must be >= 0, got {self.power_w!r}")
        if isinstance(self.wire_s_per_byte, bool) or not isinstance(
                self.wire_s_per_byte, (int, float)) or not (
                math.isfinite(self.wire_s_per_byte) and self.wire_s_per_byte >= 0):
            raise ClusterError(f"node {self.name!r}: wire seconds per byte must be >= 0, got "
                               f"{self.wire_s_per_byte!r}")


@dataclass(frozen=True)
class Medium:
    """One channel shared by every transfer between two of its ``nodes`` (all when empty)."""

    rate_bps: float
    nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.rate_bps, (int, float)) and math.isfinite(self.rate_bps)
                and self.rate_bps > 0):
            raise ClusterError(f"medium rate must be a finite number > 0 bit/s, got "
                               f"{self.rate_bps!r}")

    def carries(self, a: str, b: str) -> bool:
        return a != b and (not self.nodes or (a in self.nodes and b in self.nodes))


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[ClusterNode, ...]
    # (a, b) -> Link; one direction given covers both unless the reverse is given too
    links: Mapping[tuple[str, str], Link] = field(default_factory=dict)
    default_link: Link | None = None  # every pair not named in ``links``
    source: str = ""  # where frames arrive (the first node when empty)
    sink: str = ""  # where answers go (the source when empty)
    medium: Medium | None = None
    reference: Profile | None = None  # scaled by ``speed`` for nodes without a profile

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ClusterError("a cluster needs at least one node")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ClusterError(f"node names repeat: {names}")
        object.__setattr__(self, "source", self.source or names[0])
        object.__setattr__(self, "sink", self.sink or self.source)
        for role in ("source", "sink"):
            self.node(getattr(self, role), f"the {role}")
        for (a, b) in self.links:
            for end in (a, b):
                self.node(end, f"link {a}-{b}")
        if self.medium is not None:
            for end in self.medium.nodes:
                self.node(end, "the medium")
        if self.default_link is None:
            missing = [f"{a}-{b}" for i, a in enumerate(names) for b in names[i + 1:]
                       if (a, b) not in self.links and (b, a) not in self.links]
            if missing:
                raise ClusterError(f"the link matrix has no link for {', '.join(missing[:6])}"
                                   f"{' ...' if len(missing) > 6 else ''}; give every pair "
                                   "A-B: RATE,DELAY or a 'default: RATE,DELAY'")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str, where: str = "") -> ClusterNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"{where + ' names ' if where else ''}unknown node {name!r}; "
                           f"nodes are {list(self.names)}")

    def link(self, a: str, b: str) -> Link | None:
        """The link from node a to node b; None for a node to itself (nothing crosses)."""
        if a == b:
            return None
        for key in ((a, b), (b, a)):
            if key in self.links:
                return self.links[key]
        if self.default_link is not None:
            return self.default_link
        raise ClusterError(f"no link for the pair {a}-{b}; give {a}-{b}: RATE,DELAY or a "
                           "default")

    def profiles(self, reference: Profile | None = None) -> dict[str, Profile]:
        """Each node's profile: its own, or the reference scaled by its speed. Every profile
        must measure the same graph."""
        ref = self.reference or reference
        out = {}
        for n in self.nodes:
            if n.profile is not None:
                out[n.name] = n.profile if n.speed == 1 else scale_profile(n.profile, n.speed,
                                                                           n.name)
            elif ref is None:
                raise ClusterError(f"node {n.name!r} has no profile and the cluster no "
                                   "reference profile to scale by its speed; give the node a "
                                   "'profile' or the cluster a 'reference'")
            else:
                out[n.name] = scale_profile(ref, n.speed, n.name)
        first = next(iter(out))
        for name, p in out.items():
            if p.signature() != out[first].signature():
                raise ClusterError(
                    f"node {name!r} profiles {p.model!r} ({len(p.nodes)} nodes) but node "
                    f"{first!r} profiles {out[first].model!r} ({len(out[first].nodes)} "
                    "nodes); every node must profile the same graph")
        return out
