"""Scenarios the planner benchmarks share: zoo models with hosts derived by speed factor."""
from __future__ import annotations

from tiercut import ProfileSettings, profile_model, zoo
from tiercut.planner import Host, Scenario, parse_link
from tiercut.measure.predict import scale_profile

SPEEDS = {"device": 0.1, "edge": 1.0, "cloud": 5.0}  # device 10x slower, cloud 5x faster
LINKS = {("device", "edge"): "20mbit,10ms", ("edge", "cloud"): "200mbit,15ms",
         ("device", "cloud"): "10mbit,40ms"}


def measured(name: str, repeat: int = 5):
    entry = zoo.entry(name)
    return profile_model(entry.build(), entry.example_inputs(), name=name,
                         settings=ProfileSettings(repeat=repeat, warmup=1))


def scenario(profile, tiers=("device", "edge", "cloud"), extra_hosts: int = 0) -> Scenario:
    hosts = []
    for tier in tiers:
        hosts.append(Host(tier, tier, scale_profile(profile, SPEEDS[tier], tier)))
        if tier != "device":
            for k in range(extra_hosts):
                name = f"{tier}{k + 2}"
                hosts.append(Host(name, tier, scale_profile(profile, SPEEDS[tier] * (1.5 + k), name),
                                  load=2.0 + k))
    links = {k: parse_link(v) for k, v in LINKS.items() if set(k) <= set(tiers)}
    return Scenario(tuple(tiers), tuple(hosts), links)
