"""Private input: the model's input never leaves the device.

``private_input`` (a ``Constraints`` field, or a scenario file's) names a prefix of the graph
that runs on the device: every node that reads a model input (so no hop carries an input
tensor), plus the first N compute nodes in topological order (an int N >= 0) or one named node;
each with all its ancestors, since data only flows forward. ``build`` turns the prefix into pins
to the device tier, so every method (chain DP, min-cut, the integer program, brute force) and
everything built on them (decision tables, the joint cut and codec, the policies) honours it.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import TiercutError

Spec = int | str  # N (the input and the first N compute nodes) or the name of the last node


class PrivateInputError(TiercutError, ValueError):
    """A private-input setting that names no node of the graph or is out of range."""


def parse_private(value: object) -> Spec:
    """A whole number (as given or as text, like ``--private-input 3``) or a node name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return int(value)
        except ValueError:
            return value.strip()
    raise PrivateInputError(f"private input {value!r} must be a whole number N >= 0 (the input "
                            "and the first N nodes stay on the device) or a node name (it and "
                            "its ancestors stay)")


def check_private(spec: Spec, names: Sequence[str]) -> None:
    """``names``: the compute nodes in topological order."""
    if parse_private(spec) != spec:  # a bool, a float, text with spaces...
        raise PrivateInputError(f"private input {spec!r} must be a whole number N >= 0 or a "
                                f"node name, e.g. {list(names[:4])}")
    if isinstance(spec, int):
        if not 0 <= spec <= len(names):
            raise PrivateInputError(f"private input {spec} is out of range: give N in "
                                    f"0..{len(names)} (the model has {len(names)} nodes) or "
                                    f"a node name, e.g. {list(names[:4])}")
    elif spec not in names:
        raise PrivateInputError(f"private input names unknown node {spec!r}; nodes are, in "
                                f"order, {list(names[:8])}{' ...' if len(names) > 8 else ''}")


def private_indices(spec: Spec | None, names: Sequence[str],
                    preds: Sequence[Sequence[int]], first: int) -> tuple[int, ...]:
    """The compute nodes the device must run, ascending, as indices into ``names`` (the model's
    ``first`` inputs, then the nodes in topological order; ``preds``: what each one reads)."""
    if spec is None:
        return ()
    check_private(spec, names[first:])
    seeds = {v for v in range(first, len(names)) if any(u < first for u in preds[v])}
    if isinstance(spec, int):
        seeds.update(range(first, first + spec))
    else:
        seeds.add(list(names).index(spec))
    todo, kept = list(seeds), set(seeds)
    while todo:  # ancestors: a node on the device needs its inputs on the device too
        for u in preds[todo.pop()]:
            if u >= first and u not in kept:
                kept.add(u)
                todo.append(u)
    return tuple(sorted(kept))


def memory_floor(out_bytes: Sequence[float], params: Sequence[float], first: int,
                 private: Sequence[int]) -> float:
    """The device's memory as ``problem.memory_use`` counts it when it runs only the private
    prefix: the model's ``first`` inputs plus each private node's parameters and output. A
    device that runs more holds more (it receives nothing), so no placement needs less."""
    return math.fsum([*(out_bytes[v] for v in range(first)),
                      *(params[v] + out_bytes[v] for v in private)])


def describe_prefix(names: Sequence[str]) -> str:
    """The private nodes in a few words: 'conv1, relu' or 'conv1, bn1, relu, maxpool .. add
    (12 nodes)'."""
    more = f" .. {names[-1]} ({len(names)} nodes)" if len(names) > 4 else ""
    return ", ".join(names[:4]) + more if names else "no node"


def memory_message(caps: Sequence[tuple[str, int]], spec: Spec, prefix: str, floor: float,
                   exact: bool, enough: float) -> str:
    """Why the device cannot hold the private prefix, and the least memory that would do.
    ``caps``: (host, memory_bytes) of the device's capped hosts."""
    cap = max(c for _, c in caps)
    hosts = ", ".join(f"{name!r} has memory_bytes={c}" for name, c in caps)
    head = (f"private_input {spec} cannot be met: the device must hold the input and run "
            f"{prefix}, {floor:.0f} bytes as the planner counts memory (parameters plus every "
            f"tensor produced), but device host {hosts}")
    if exact:
        return f"{head}; the smallest device memory that would do is {floor:.0f} bytes"
    low = f"at least {floor:.0f}" if floor > cap else f"more than {cap}"
    return (f"{head}; other constraints put more on the device: the smallest device memory "
            f"that would do is {low} bytes (a lower bound), and {enough:.0f} bytes is enough")
