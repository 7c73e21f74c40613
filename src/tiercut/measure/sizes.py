"""SizedProfiles: one model's profiles at a few input sizes, and its costs at any other size.

Dynamic shapes are handled by RE-PLANNING PER SIZE: a model is profiled at a few sizes (batch
1, 4, 16; or a few sequence lengths or image sizes), ``SizedProfiles.at(size)`` interpolates
every node's costs to the size a request has, and the planner plans that size on its own
(``tiercut.runtime.sized`` serves each size with its own plan). Nothing here assumes a graph
that works at every size: each measured size is its own trace, and the interpolated profile
keeps the node names the traces share.

Per node, latency (and its spread), output bytes and flops are interpolated piecewise-linearly
in size between the two measured sizes around it, and extrapolated linearly beyond the ends
from the two nearest measured sizes, never below 0; so are the model's input bytes and its
whole-model latency. Bytes are exact for batch, where they scale linearly. With one measured
size, every cost is taken as proportional to size (exact for bytes at batch, a guess for
latency). The file format is one JSON object, ``tiercut-sized-profiles/1``: ``dimension``,
``sizes`` and ``profiles``, each a ``tiercut-profile/1`` object.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ProfileError
from .profile import ModelInput, Profile, read_json
from .profiler import ProfileSettings, profile_model

FORMAT = "tiercut-sized-profiles/1"
BATCH = "batch"


@dataclass(frozen=True)
class SizedProfiles:
    """``profiles[i]`` measured at ``sizes[i]`` (increasing, each >= 1), all of one graph.

    ``dimension`` names what the size is: ``"batch"`` (``at`` sets the profile's batch) or
    anything else (``"seq_len"``, ``"image"``: the profiles' batch is kept).
    """

    sizes: tuple[int, ...]
    profiles: tuple[Profile, ...]
    dimension: str = BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes))
        object.__setattr__(self, "profiles", tuple(self.profiles))
        _check_sizes(self.sizes)
        if len(self.profiles) != len(self.sizes):
            raise ValueError(f"{len(self.sizes)} sizes {list(self.sizes)} but "
                             f"{len(self.profiles)} profiles; give one profile per size")
        if not isinstance(self.dimension, str) or not self.dimension:
            raise ValueError(f"dimension must be a non-empty name like 'batch', got "
                             f"{self.dimension!r}")
        first = self.profiles[0]
        for size, p in zip(self.sizes[1:], self.profiles[1:]):
            _check_same_graph(self.sizes[0], first, size, p)

    @property
    def model(self) -> str:
        return self.profiles[0].model

    def at(self, size: int) -> Profile:
        """The profile at ``size``: the measured one, or interpolated (see the module)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        if size in self.sizes:
            return self.profiles[self.sizes.index(size)]
        weights = self._weights(size)
        ref = self.profiles[0]

        def mix(get: Callable[[Profile], float]) -> float:
            return max(0.0, math.fsum(w * get(self.profiles[i]) for i, w in weights))

        def whole(get: Callable[[Profile], float]) -> int:
            return int(round(mix(get)))

        nodes = tuple(dataclasses.replace(
            n, latency_s=mix(lambda p, k=k: p.nodes[k].latency_s),
            latency_spread_s=mix(lambda p, k=k: p.nodes[k].latency_spread_s),
            output_bytes=whole(lambda p, k=k: p.nodes[k].output_bytes),
            flops=whole(lambda p, k=k: p.nodes[k].flops)) for k, n in enumerate(ref.nodes))
        inputs = tuple(ModelInput(
            m.name, whole(lambda p, k=k: p.inputs[k].bytes),
            tuple(d if all(p.inputs[k].shape[j] == d for p in self.profiles)
                  else max(1, whole(lambda p, k=k, j=j: p.inputs[k].shape[j]))
                  for j, d in enumerate(m.shape)) if _same_ranks(self.profiles, k) else (),
            m.dtype) for k, m in enumerate(ref.inputs))
        latencies = [p.model_latency_s for p in self.profiles]
        spreads = [p.model_latency_spread_s for p in self.profiles]
        return dataclasses.replace(
            ref, nodes=nodes, inputs=inputs, input_bytes=whole(lambda p: p.input_bytes),
            model_latency_s=None if None in latencies else mix(lambda p: p.model_latency_s),
            model_latency_spread_s=None if None in spreads
            else mix(lambda p: p.model_latency_spread_s),
            batch=size if self.dimension == BATCH else ref.batch,
            predicted={"method": "size-interpolation", "dimension": self.dimension,
                       "size": size, "from_sizes": [self.sizes[i] for i, _ in weights]})

    def _weights(self, size: int) -> list[tuple[int, float]]:
        """(profile index, weight) pairs whose weighted sum is the cost at ``size``."""
        s = self.sizes
        if len(s) == 1:
            return [(0, size / s[0])]
        hi = min(max(bisect.bisect_left(s, size), 1), len(s) - 1)  # between or nearest pair
        lo = hi - 1
        t = (size - s[lo]) / (s[hi] - s[lo])
        return [(lo, 1.0 - t), (hi, t)]

    # --- the file -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "dimension": self.dimension, "sizes": list(self.sizes),
                "profiles": [p.to_dict() for p in self.profiles]}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "sized profiles") -> SizedProfiles:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ProfileError(f"{source}: format is {got!r}; expected {FORMAT!r}")
        sizes, profiles = data.get("sizes"), data.get("profiles")
        if not isinstance(sizes, list) or not isinstance(profiles, list):
            raise ProfileError(f"{source}: 'sizes' and 'profiles' must be lists, got "
                               f"{sizes!r} and {type(profiles).__name__}")
        if len(sizes) != len(profiles):
            raise ProfileError(f"{source}: {len(sizes)} sizes {sizes} but {len(profiles)} "
                               "profiles; give one profile per size")
        return cls(tuple(sizes), tuple(Profile.from_dict(p, f"{source}: size {s}")
                                       for s, p in zip(sizes, profiles)),
                   data.get("dimension", BATCH))

    @classmethod
    def load(cls, path: str | Path) -> SizedProfiles:
        return cls.from_dict(read_json(path, "sized profiles file"), source=str(path))


def profile_sizes(source: Any, sizes: Sequence[int],
                  settings: ProfileSettings = ProfileSettings(), name: str | None = None,
                  dimension: str = BATCH) -> SizedProfiles:
    """Profile a model at each of ``sizes`` on this host.

    ``source``: a zoo entry (anything with ``build()`` and ``example_inputs(batch)``, such as
    ``tiercut.zoo.entry("mobilenet_v2")``: the sizes are batch sizes), or a callable
    ``make(size) -> (model, example_inputs)`` for any other size (a sequence length: build the
    inputs with ``tiercut.zoo.resolve(spec, inputs=[...])`` at that length; give
    ``dimension``). The model is traced again at each size.
    """
    _check_sizes(tuple(sizes))
    if hasattr(source, "build") and hasattr(source, "example_inputs"):
        model = source.build()
        name = name or getattr(source, "name", None)

        def make(size: int) -> tuple[Any, Any]:
            return model, source.example_inputs(size)
    elif callable(source):
        make = source
    else:
        raise ValueError(f"profile_sizes takes a zoo entry or a callable size -> (model, "
                         f"inputs), got {type(source).__name__}")
    profiles = []
    for size in sizes:
        model, inputs = make(size)
        profiles.append(profile_model(model, inputs, name=name, settings=settings))
    return SizedProfiles(tuple(sizes), tuple(profiles), dimension)


def _check_sizes(sizes: tuple) -> None:
    if len(sizes) < 1:
        raise ValueError("sizes is empty; give at least one size, e.g. (1, 4, 16)")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"size {s!r} in {list(sizes)} is not an integer >= 1")
    for a, b in zip(sizes, sizes[1:]):
        if b <= a:
            raise ValueError(f"sizes {list(sizes)} are not increasing ({b} after {a}); give "
                             "each size once, smallest first")


def _check_same_graph(size0: int, p0: Profile, size: int, p: Profile) -> None:
    names0, names = [n.name for n in p0.nodes], [n.name for n in p.nodes]
    if names0 != names:
        only0 = [n for n in names0 if n not in set(names)]
        only = [n for n in names if n not in set(names0)]
        where = (f"nodes {only0[:5]} only at size {size0} and {only[:5]} only at size {size}"
                 if only0 or only else "the same nodes in another order")
        raise ValueError(f"profiles at sizes {size0} and {size} are of different graphs "
                         f"({len(names0)} and {len(names)} nodes): {where}; profile one graph "
                         "at every size")
    inputs0, inputs = [m.name for m in p0.inputs], [m.name for m in p.inputs]
    if inputs0 != inputs:
        raise ValueError(f"profiles at sizes {size0} and {size} have model inputs {inputs0} "
                         f"and {inputs}; profile one graph at every size")


def _same_ranks(profiles: Sequence[Profile], k: int) -> bool:
    return len({len(p.inputs[k].shape) for p in profiles}) == 1


__all__ = ["BATCH", "FORMAT", "SizedProfiles", "profile_sizes"]
