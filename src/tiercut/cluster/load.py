"""Reading a cluster from YAML or JSON, with the units the device/edge/cloud scenarios use.

The one place that reads files; everything after it is plain data.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..measure.profile import Profile
from ..planner.scenario import Link, ScenarioError, parse_rate, parse_seconds
from .scenario import Cluster, ClusterError, ClusterNode, Medium

_BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2 ** 10, "mib": 2 ** 20,
               "gib": 2 ** 30}
TOP_KEYS = {"nodes", "links", "medium", "source", "sink", "reference"}
NODE_KEYS = {"name", "profile", "speed", "memory", "power_w", "wire_ns_per_byte"}


def parse_bytes(text: Any, where: str) -> int:
    """'512mb' -> 512000000, '2gib' -> 2147483648; a bare integer is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    for unit in sorted(_BYTE_UNITS, key=len, reverse=True):
        if t.endswith(unit):
            try:
                return int(float(t[: -len(unit)]) * _BYTE_UNITS[unit])
            except ValueError:
                break
    raise ClusterError(f"{where}: {text!r} is not a size like 512mb, 2gib or a number of bytes")


def parse_cluster_link(value: Any, where: str) -> Link:
    """'100mbit,2ms' or {rate: 100mbit, delay: 2ms}."""
    try:
        if isinstance(value, dict):
            unknown = set(value) - {"rate", "delay"}
            if unknown or "rate" not in value:
                raise ClusterError(f"{where}: a link is RATE,DELAY or {{rate, delay}}, got "
                                   f"{value!r}")
            return Link(parse_rate(value["rate"]), parse_seconds(value.get("delay", 0)))
        rate, _, delay = str(value).partition(",")
        return Link(parse_rate(rate), parse_seconds(delay) if delay.strip() else 0.0)
    except ScenarioError as exc:
        raise ClusterError(f"{where}: {exc}") from None


def load_cluster(path: str | Path, base_dir: Path | None = None) -> Cluster:
    """A cluster from YAML (or JSON)::

        reference: ref.json        # optional: scaled by each node's speed
        source: phone              # where frames arrive (default: the first node)
        sink: phone                # where answers go (default: the source)
        nodes:
          - {name: phone, profile: phone.json, memory: 2gib, power_w: 3}
          - {name: pi1, speed: 0.5, memory: 512mb}
          - {name: laptop, speed: 4}
        links:                     # 'A-B' covers both directions unless 'B-A' is given too
          default: 100mbit,2ms
          phone-pi1: 20mbit,5ms
          pi1-laptop: {rate: 1gbit, delay: 1ms}
        medium: {rate: 100mbit, nodes: [phone, pi1]}   # optional: one shared channel
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterError(f"cannot read cluster file {str(path)!r}: {exc.strerror}") from None
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    return cluster_from_dict(data, base_dir or path.parent, source=str(path))


def _profile(value: Any, base_dir: Path, where: str) -> Profile:
    if isinstance(value, Profile):
        return value
    p = Path(str(value))
    try:
        return Profile.load(p if p.is_absolute() else base_dir / p)
    except ProfileError as exc:
        raise ClusterError(f"{where}: {exc}") from None


def cluster_from_dict(data: Any, base_dir: Path = Path("."), source: str = "cluster"
                      ) -> Cluster:
    if not isinstance(data, dict):
        raise ClusterError(f"{source}: a cluster is a mapping with 'nodes' and 'links'")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ClusterError(f"{source}: unknown keys {sorted(unknown)}; accepted: "
                           f"{', '.join(sorted(TOP_KEYS))}")
    nodes = []
    for i, raw in enumerate(data.get("nodes") or ()):
        where = f"{source}: node {i}"
        if not isinstance(raw, dict) or "name" not in raw:
            raise ClusterError(f"{where} needs a name, got {raw!r}")
        bad = set(raw) - NODE_KEYS
        if bad:
            raise ClusterError(f"{where} ({raw['name']!r}): unknown keys {sorted(bad)}; "
                               f"accepted: {', '.join(sorted(NODE_KEYS))}")
        memory = raw.get("memory")
        nodes.append(ClusterNode(
            str(raw["name"]),
            _profile(raw["profile"], base_dir, where) if "profile" in raw else None,
            raw.get("speed", 1.0),
            None if memory is None else parse_bytes(memory, f"{where}: memory"),
            raw.get("power_w", 0.0), _wire(raw.get("wire_ns_per_byte", 0.0), where)))
    links, default = {}, None
    for key, value in (data.get("links") or {}).items():
        where = f"{source}: link {key!r}"
        if key == "default":
            default = parse_cluster_link(value, where)
            continue
        a, sep, b = str(key).partition("-")
        if not sep or not a or not b:
            raise ClusterError(f"{where}: a link key is 'A-B' (two node names) or 'default'")
        links[(a, b)] = parse_cluster_link(value, where)
    medium = None
    if data.get("medium") is not None:
        raw = data["medium"]
        if not isinstance(raw, dict) or "rate" not in raw or set(raw) - {"rate", "nodes"}:
            raise ClusterError(f"{source}: medium is {{rate: RATE, nodes: [..]}}, got {raw!r}")
        try:
            medium = Medium(parse_rate(raw["rate"]), tuple(raw.get("nodes") or ()))
        except ScenarioError as exc:
            raise ClusterError(f"{source}: medium: {exc}") from None
    reference = (None if data.get("reference") is None
                 else _profile(data["reference"], base_dir, f"{source}: reference"))
    try:
        return Cluster(tuple(nodes), links, default, str(data.get("source") or ""),
                       str(data.get("sink") or ""), medium, reference)
    except ClusterError as exc:
        raise ClusterError(f"{source}: {exc}") from None


def _wire(value: Any, where: str) -> float:
    """``wire_ns_per_byte`` (nanoseconds of the node's time per byte moved) in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClusterError(f"{where}: wire_ns_per_byte must be a number of nanoseconds >= 0, "
                           f"got {value!r}")
    return float(value) * 1e-9
