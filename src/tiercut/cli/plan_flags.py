"""A Scenario from command-line flags (``--tier``, ``--link``, ``--model``, ``--scenario``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..measure.profile import Profile
from ..planner.scenario import (DEFAULT_TIERS, Host, Scenario, ScenarioError, load_scenario,
                                parse_link)

DEFAULT_SPEEDS = {"device": "x0.1", "edge": "x1", "cloud": "x5"}


def scenario_from_flags(model: str | None, tier_flags: list[str], links: list[tuple[str, str]],
                        scenario_file: Path | None, return_outputs: bool, console: Any,
                        input_bytes: int | None = None,
                        input_shape: tuple[int, ...] | None = None,
                        inputs: Sequence[str] = ()) -> Scenario:
    """``input_shape`` and ``inputs`` (``--input`` values) are the inputs of ``model``, a
    ``module:factory`` without its own (see ``tiercut.zoo.resolve``)."""
    if scenario_file is not None:
        base = load_scenario(scenario_file)
        hosts, tiers, link_map = list(base.hosts), base.tiers, dict(base.links)
        codecs, input_bytes = base.codecs, input_bytes if input_bytes is not None else base.input_bytes
        private = base.private_input
    else:
        specs = [_tier_flag(f) for f in tier_flags]
        if not specs:
            if model is None:
                raise ScenarioError("give --scenario, --tier TIER=PROFILE.json (one per tier), or "
                                    "--model M to derive device/edge/cloud by speed factor")
            specs = [(t, [DEFAULT_SPEEDS[t]]) for t in DEFAULT_TIERS]
        tiers = tuple(t for t, _ in specs)
        here = None
        hosts = []
        for tier, items in specs:
            for item in items:
                if item.startswith("x"):
                    if model is None:
                        raise ScenarioError(f"--tier {tier}={item}: a speed factor needs --model")
                    if here is None:
                        here = _profile_here(model, console, input_shape, inputs)
                    from ..measure.predict import scale_profile

                    name = f"{tier}-{item}"
                    if any(h.name == name for h in hosts):  # edge=x1,x1: two hosts alike
                        name += f"-{sum(h.name.startswith(name) for h in hosts) + 1}"
                    hosts.append(Host(name, tier, scale_profile(here, _speed(item), name)))
                else:
                    profile = Profile.load(item)
                    name = Path(item).stem
                    if any(h.name == name for h in hosts):
                        name = f"{tier}:{name}"
                    hosts.append(Host(name, tier, profile))
        link_map, codecs, private = {}, {}, None
    names = set(tiers) | {h.name for h in hosts}
    for key, value in links:
        link_map[_split_pair(key, names)] = parse_link(value)
    return Scenario(tuple(tiers), tuple(hosts), link_map, return_outputs, codecs, input_bytes,
                    private)


def _tier_flag(flag: str) -> tuple[str, list[str]]:
    tier, sep, rest = flag.partition("=")
    if not sep or not tier or not rest:
        raise ScenarioError(f"--tier {flag!r} must look like TIER=PROFILE.json[,PROFILE2.json]")
    return tier, [p for p in rest.split(",") if p]


def _speed(item: str) -> float:
    try:
        return float(item[1:])
    except ValueError:
        raise ScenarioError(f"speed factor {item!r} must look like x0.1 or x5") from None


def _split_pair(key: str, names: set[str]) -> tuple[str, str]:
    """'device-edge' or 'HOST_A-HOST_B'; host names may contain dashes themselves."""
    for i, ch in enumerate(key):
        if ch == "-" and key[:i] in names and key[i + 1:] in names:
            return key[:i], key[i + 1:]
    raise ScenarioError(f"link {key!r} must be A-B where A and B are tiers or hosts: "
                        f"{sorted(names)}")


def model_entry(model: str, input_shape: tuple[int, ...] | None = None,
                inputs: Sequence[str] = ()) -> Any:
    """The ZooEntry of ``--model`` with its ``--input-shape`` / ``--input`` flags."""
    from ..zoo import resolve

    return resolve(model, input_shape, list(inputs) or None)


def _profile_here(model: str, console: Any, input_shape: tuple[int, ...] | None = None,
                  inputs: Sequence[str] = ()) -> Profile:
    from ..measure.profiler import ProfileSettings, profile_graph
    from .profiling import traced

    if model.endswith(".onnx"):
        from ..onnxgraph import profile_onnx
        from .profiling import onnx_shapes

        shapes = onnx_shapes(model, input_shape and ",".join(map(str, input_shape)), inputs)
        with console.status(f"profiling {model} on this host (ONNX Runtime)"):
            return profile_onnx(model, ProfileSettings(repeat=5, warmup=2), input_shapes=shapes)
    entry = model_entry(model, input_shape, inputs)
    net, inputs = entry.build(), entry.example_inputs()
    # a forward taking inputs it is not given is refused
    graph = traced(net, inputs, model, entry.leaf_modules)
    with console.status(f"profiling {model} on this host"):
        return profile_graph(graph, net, inputs, ProfileSettings(repeat=5, warmup=2))


