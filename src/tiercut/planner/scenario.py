"""Scenario: ordered tiers, candidate hosts with their profiles, and the links between them.

Plain frozen data: a planner reads it and opens nothing. ``load_scenario`` reads YAML or TOML.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import TiercutError
from ..measure.profile import Profile
from .privacy import PrivateInputError, Spec, check_private, parse_private

DEFAULT_TIERS = ("device", "edge", "cloud")


class ScenarioError(TiercutError, ValueError):
    """A scenario that cannot be planned on: unknown names, bad links, mixed graphs."""


@dataclass(frozen=True)
class Link:
    bandwidth_bps: float  # bits per second
    latency_s: float = 0.0  # one way

    def __post_init__(self) -> None:
        if not (isinstance(self.bandwidth_bps, (int, float)) and math.isfinite(self.bandwidth_bps)
                and self.bandwidth_bps > 0):
            raise ScenarioError(f"link bandwidth must be a finite number > 0 bit/s, got "
                                f"{self.bandwidth_bps!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ScenarioError(f"link latency must be >= 0 s, got {self.latency_s!r}")

    @property
    def seconds_per_byte(self) -> float:
        return 8.0 / self.bandwidth_bps


@dataclass(frozen=True)
class Codec:
    """How a tensor crosses a hop: its size ratio against raw and its cost per raw byte."""

    name: str
    ratio: float = 1.0  # encoded bytes / raw bytes
    encode_s_per_byte: float = 0.0
    decode_s_per_byte: float = 0.0

    def __post_init__(self) -> None:
        for label, value in (("ratio", self.ratio), ("encode_s_per_byte", self.encode_s_per_byte),
                             ("decode_s_per_byte", self.decode_s_per_byte)):
            if not (math.isfinite(value) and value >= 0):
                raise ScenarioError(f"codec {self.name!r}: {label} must be >= 0, got {value!r}")
        if self.ratio == 0:
            raise ScenarioError(f"codec {self.name!r}: ratio must be > 0")

    def seconds_per_byte(self, link: Link) -> float:
        return self.encode_s_per_byte + self.ratio * link.seconds_per_byte + self.decode_s_per_byte


RAW = Codec("raw")


@dataclass(frozen=True)
class Host:
    name: str
    tier: str
    profile: Profile
    load: float = 1.0  # multiplies every compute time (1 = idle)
    memory_bytes: int | None = None
    compute_power_w: float = 0.0  # for the energy objective (device hosts)
    radio_power_w: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.load) and self.load > 0):
            raise ScenarioError(f"host {self.name!r}: load must be > 0, got {self.load!r}")


@dataclass(frozen=True)
class Scenario:
    tiers: tuple[str, ...]
    hosts: tuple[Host, ...]
    # (a, b) -> Link, a and b host or tier names; one direction given covers both unless the
    # reverse is given too
    links: Mapping[tuple[str, str], Link] = field(default_factory=dict)
    return_outputs: bool = True  # count the outputs' trip back to the device
    # (a, b) -> codecs allowed on that hop (named like links); raw where none is given
    codecs: Mapping[tuple[str, str], tuple[Codec, ...]] = field(default_factory=dict)
    input_bytes: int | None = None  # overrides the profiles' model input size
    # the model input never leaves the device: N (it and the first N nodes) or a node name
    # (it and its ancestors); see privacy.py. A Constraints.private_input overrides it.
    private_input: Spec | None = None

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ScenarioError("a scenario needs at least one tier")
        if len(set(self.tiers)) != len(self.tiers):
            raise ScenarioError(f"tier names repeat: {list(self.tiers)}")
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise ScenarioError(f"host names repeat: {names}")
        for h in self.hosts:
            if h.tier not in self.tiers:
                raise ScenarioError(f"host {h.name!r} is on unknown tier {h.tier!r}; tiers are "
                                    f"{list(self.tiers)}")
        if self.input_bytes is not None and (not isinstance(self.input_bytes, int)
                                             or self.input_bytes < 0):
            raise ScenarioError(f"input_bytes must be an integer >= 0, got {self.input_bytes!r}")
        if not self.hosts_of(self.tiers[0]):
            raise ScenarioError(f"the first tier {self.tiers[0]!r} (where the input starts) has "
                                "no host")
        if self.private_input is not None:
            check_private(self.private_input, [n.name for n in self.hosts[0].profile.nodes])
        ref = self.hosts[0]
        for h in self.hosts[1:]:
            if h.profile.signature() != ref.profile.signature():
                raise ScenarioError(
                    f"profiles of different graphs: host {h.name!r} has {h.profile.model!r} "
                    f"({len(h.profile.nodes)} nodes) but host {ref.name!r} has "
                    f"{ref.profile.model!r} ({len(ref.profile.nodes)} nodes); every host must "
                    "profile the same graph")
        for (a, b) in self.links:
            for end in (a, b):
                if end not in self.tiers and end not in names:
                    raise ScenarioError(f"link {a}-{b} names {end!r}, which is neither a tier "
                                        f"{list(self.tiers)} nor a host {names}")

    def hosts_of(self, tier: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.tier == tier)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ScenarioError(f"unknown host {name!r}; hosts are {[h.name for h in self.hosts]}")

    def tier_index(self, tier: str) -> int:
        try:
            return self.tiers.index(tier)
        except ValueError:
            raise ScenarioError(f"unknown tier {tier!r}; tiers are {list(self.tiers)}") from None

    def codec(self, a: Host, b: Host) -> Codec:
        """The allowed codec that moves a byte from a to b fastest (raw if none is given)."""
        link = self.link(a, b)
        for key in ((a.name, b.name), (a.tier, b.tier), (b.name, a.name), (b.tier, a.tier)):
            if key in self.codecs and self.codecs[key]:
                return min(self.codecs[key], key=lambda c: c.seconds_per_byte(link))
        return RAW

    def seconds_per_byte(self, a: Host, b: Host) -> float:
        return self.codec(a, b).seconds_per_byte(self.link(a, b))

    def link(self, a: Host, b: Host) -> Link:
        """The link data takes from host a to host b: host pair first, then tier pair."""
        for key in ((a.name, b.name), (a.tier, b.tier), (b.name, a.name), (b.tier, a.tier)):
            if key in self.links:
                return self.links[key]
        raise ScenarioError(f"no link for the hop {a.name} ({a.tier}) -> {b.name} ({b.tier}); "
                            f"give --link {a.tier}-{b.tier}=RATE,DELAY or "
                            f"--link {a.name}-{b.name}=RATE,DELAY")


_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 1, "kbps": 1e3,
               "mbps": 1e6, "gbps": 1e9}
_TIME_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6}


def parse_rate(text: str | float) -> float:
    """'10mbit' -> 1e7 bit/s; a bare number is bit/s."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    for unit in sorted(_RATE_UNITS, key=len, reverse=True):
        if t.endswith(unit):
            try:
                return float(t[: -len(unit)]) * _RATE_UNITS[unit]
            except ValueError:
                break
    try:
        return float(t)
    except ValueError:
        raise ScenarioError(f"bandwidth {text!r} is not a rate like 10mbit, 1.6mbit, 1gbit or "
                            "a number of bit/s") from None


def parse_seconds(text: str | float) -> float:
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    for unit in ("ms", "us", "s"):
        if t.endswith(unit):
            try:
                return float(t[: -len(unit)]) * _TIME_UNITS[unit]
            except ValueError:
                break
    raise ScenarioError(f"latency {text!r} is not a duration like 20ms, 66.7ms or 0.1s")


def parse_link(text: str) -> Link:
    """'10mbit,20ms' -> Link."""
    rate, _, delay = text.partition(",")
    return Link(parse_rate(rate), parse_seconds(delay) if delay else 0.0)


def load_scenario(path: str | Path, base_dir: Path | None = None) -> Scenario:
    """A scenario from YAML or TOML::

        tiers: [device, edge, cloud]
        return_outputs: true
        hosts:
          - {name: phone, tier: device, profile: phone.json, compute_power_w: 2, radio_power_w: 1}
          - {name: e1, tier: edge, profile: e1.json, load: 1.5}
        links:
          device-edge: 10mbit,20ms
          e1-cloud: {bandwidth: 1gbit, latency: 5ms}
        codecs:    # optional, per hop: the planner takes the fastest allowed one
          device-edge: [{name: q8+lz4, ratio: 0.2, encode_s_per_byte: 2e-9, decode_s_per_byte: 1e-9}]
        input_bytes: 150528   # optional: overrides the profiles' input size
        private_input: 3      # optional: the input and the first 3 nodes (or: conv1, a node
                              # and its ancestors) never leave the device
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    return scenario_from_dict(data, base_dir or path.parent, source=str(path))


def scenario_from_dict(data: Any, base_dir: Path, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping with 'hosts' and 'links'")
    accepted = {"tiers", "hosts", "links", "return_outputs", "codecs", "input_bytes",
                "private_input"}
    unknown = set(data) - accepted
    if unknown:
        raise ScenarioError(f"{source}: unknown keys {sorted(unknown)}; accepted: "
                            f"{', '.join(sorted(accepted))}")
    tiers = tuple(data.get("tiers", DEFAULT_TIERS))
    hosts = []
    for i, raw in enumerate(data.get("hosts", ())):
        if not isinstance(raw, dict) or not {"name", "tier", "profile"} <= set(raw):
            raise ScenarioError(f"{source}: host {i} needs name, tier and profile, got {raw!r}")
        extra = {k: raw[k] for k in ("load", "memory_bytes", "compute_power_w", "radio_power_w")
                 if k in raw}
        profile_path = Path(raw["profile"])
        profile = Profile.load(profile_path if profile_path.is_absolute() else base_dir / profile_path)
        hosts.append(Host(raw["name"], raw["tier"], profile, **extra))
    links = {}
    for key, value in (data.get("links") or {}).items():
        a, sep, b = str(key).partition("-")
        if not sep:
            raise ScenarioError(f"{source}: link key {key!r} must be 'A-B' (tiers or hosts)")
        if isinstance(value, dict):
            links[(a, b)] = Link(parse_rate(value["bandwidth"]), parse_seconds(value.get("latency", 0)))
        else:
            links[(a, b)] = parse_link(str(value))
    codecs = {}
    for key, entries in (data.get("codecs") or {}).items():
        a, _, b = str(key).partition("-")
        try:
            codecs[(a, b)] = tuple(Codec(**e) for e in entries)
        except TypeError as exc:
            raise ScenarioError(f"{source}: codec on {key!r}: {exc}; a codec has name, ratio, "
                                "encode_s_per_byte, decode_s_per_byte") from None
    private = data.get("private_input")
    try:
        return Scenario(tiers, tuple(hosts), links, bool(data.get("return_outputs", True)),
                        codecs, data.get("input_bytes"),
                        None if private is None else parse_private(private))
    except PrivateInputError as exc:
        raise PrivateInputError(f"{source}: {exc}") from None
