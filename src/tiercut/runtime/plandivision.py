"""A stage plan's division: one stage's run divided across peer tier servers (``tiercut plan
--divide``), read from a Plan and checked, apart from the rest of the StagePlan's fields."""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..errors import PlanError

LOCAL_PEER = "local"  # a division's part computed by the divided stage's own server
_PEER = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _division(d: Any, stage_of: Mapping[str, int], peers: Mapping[str, str] | None,
              tier_of: Mapping[str, str]) -> dict[str, Any] | None:
    """A ``tiercut plan --divide`` division as StagePlan.division, its hosts mapped by peers."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise PlanError(f"plan field 'division' must be an object, got {type(d).__name__}")
    hosts = d.get("hosts")
    if peers is None:
        raise PlanError(f"plan field 'division' divides a run across hosts {hosts}; give each "
                        "its endpoint with --peers NAME=host:port,...")
    host = d.get("coordinator")  # its own part is computed where the stage runs: "local"
    peers = {**peers, host: LOCAL_PEER} if isinstance(host, str) else peers
    if not isinstance(hosts, list) or any(h not in peers for h in hosts):
        missing = [h for h in hosts if h not in peers] if isinstance(hosts, list) else hosts
        raise PlanError(f"plan field 'division.hosts' names {missing}, which --peers does not "
                        f"map to an endpoint (it maps {sorted(peers)})")
    coordinator = tier_of.get(host, host)  # a host of the plan: its tier
    if coordinator not in stage_of:
        raise PlanError(f"plan field 'division.coordinator' is {coordinator!r}, not a tier on "
                        f"the route {list(stage_of)}")
    return {"stage": stage_of[coordinator], "first": d.get("first"), "last": d.get("last"),
            "bounds": list(d.get("row_bounds") or []), "peers": [peers[h] for h in hosts]}


def _divisions(division: Any) -> list[Any]:
    if division is None:
        return []
    return [division] if isinstance(division, Mapping) else list(division)


def _check_division(plan: StagePlan) -> None:
    d = plan.division
    if not isinstance(d, (Mapping, list, tuple)) or not _divisions(d):
        raise PlanError(f"plan field 'division' must be an object or a non-empty list of "
                        f"them, got {type(d).__name__}")
    stages = []
    for one in _divisions(d):
        if not isinstance(one, Mapping):
            raise PlanError(f"plan field 'division' lists a {type(one).__name__}; each entry "
                            "must be an object")
        _check_one_division(plan, one)
        stages.append(one["stage"])
    if len(set(stages)) != len(stages):
        raise PlanError(f"plan field 'division' divides stages {stages}; at most one division "
                        "per stage")


def _check_one_division(plan: StagePlan, d: Mapping[str, Any]) -> None:
    k = d.get("stage")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < plan.stages:
        raise PlanError(f"plan field 'division.stage' is {k!r}; stages are "
                        f"0..{plan.stages - 1}")
    for end in ("first", "last"):
        node = d.get(end)
        if not isinstance(node, str) or plan.assignment.get(node) != k:
            raise PlanError(f"plan field 'division.{end}' is {node!r}, which is not a node "
                            f"assigned to stage {k}")
    bounds, peers = d.get("bounds"), d.get("peers")
    if not isinstance(bounds, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        raise PlanError(f"plan field 'division.bounds' must be a list of row indices, got "
                        f"{bounds!r}")
    if not isinstance(peers, list) or len(peers) != len(bounds) + 1:
        raise PlanError(f"plan field 'division.peers' must list {len(bounds) + 1} endpoints "
                        f"(one per part), got {peers!r}")
    bad = [p for p in peers
           if not isinstance(p, str) or not (_PEER.match(p) or p == LOCAL_PEER)]
    if bad:
        raise PlanError(f"plan field 'division.peers' has {bad[:3]}, not host:port (or "
                        f"{LOCAL_PEER!r}: the part runs where the stage does)")
