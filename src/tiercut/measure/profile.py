"""Profile: one host's measurements of one graph, stored as plain JSON (``tiercut-profile/1``).

A profile needs no model code: a chain of blocks measured by another tool and written by hand
is as good for planning as one tiercut measured. ``docs/profile-format.md`` documents the
format and ``docs/profile.schema.json`` is its JSON schema.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..graph.dag import INPUT_OP, Graph

FORMAT = "tiercut-profile/1"


@dataclass(frozen=True)
class ModelInput:
    name: str
    bytes: int
    shape: tuple[int, ...] = ()
    dtype: str = ""


@dataclass(frozen=True)
class NodeProfile:
    name: str
    inputs: tuple[str, ...]  # nodes or model inputs read; empty = reads the whole model input
    latency_s: float  # median over repeats
    output_bytes: int
    latency_spread_s: float = 0.0  # interquartile range over repeats
    op: str = ""
    flops: int = 0
    param_bytes: int = 0


@dataclass(frozen=True)
class Profile:
    model: str
    host: dict[str, Any]
    input_bytes: int
    outputs: tuple[str, ...]
    nodes: tuple[NodeProfile, ...]
    inputs: tuple[ModelInput, ...] = ()
    model_latency_s: float | None = None  # whole model, measured like the nodes
    model_latency_spread_s: float | None = None
    batch: int = 1
    settings: dict[str, Any] = field(default_factory=dict)  # threads, repeat, warm-up
    predicted: dict[str, Any] | None = None  # how it was predicted, when it was not measured

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def total_latency_s(self) -> float:
        return math.fsum(n.latency_s for n in self.nodes)

    def node(self, name: str) -> NodeProfile:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ProfileError(f"profile of {self.model!r} has no node {name!r}")

    def signature(self) -> tuple:
        """What must agree between two profiles of the same graph measured on different hosts."""
        return tuple((n.name, n.inputs, n.output_bytes) for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        data = {"format": FORMAT, **asdict(self)}
        return _lists(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "profile") -> Profile:
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: a profile is a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ProfileError(f"{source}: field 'format' is {data.get('format')!r}; expected {FORMAT!r}")
        _require(data, ("model", "host", "input_bytes", "outputs", "nodes"), source)
        if not isinstance(data["nodes"], list):
            raise ProfileError(f"{source}: 'nodes' must be a list of node objects")
        nodes = []
        for i, raw in enumerate(data["nodes"]):
            where = f"{source}: node {i}" + (f" ({raw.get('name')!r})" if isinstance(raw, dict) else "")
            if not isinstance(raw, dict):
                raise ProfileError(f"{where}: a node is a JSON object")
            _require(raw, ("name", "inputs", "latency_s", "output_bytes"), where)
            known = {f for f in NodeProfile.__dataclass_fields__}
            extra = {k: raw[k] for k in raw if k in known}
            extra["inputs"] = tuple(_str_list(raw["inputs"], f"{where}: 'inputs'"))
            nodes.append(NodeProfile(**extra))
        inputs = tuple(_model_input(raw, f"{source}: model input {i}")
                       for i, raw in enumerate(_list(data.get("inputs", []), f"{source}: 'inputs'")))
        kwargs = {k: data[k] for k in ("model_latency_s", "model_latency_spread_s", "batch",
                                       "settings", "predicted") if k in data}
        try:
            return cls(model=data["model"], host=data["host"], input_bytes=data["input_bytes"],
                       outputs=tuple(_str_list(data["outputs"], f"{source}: 'outputs'")),
                       nodes=tuple(nodes), inputs=inputs, **kwargs)
        except ProfileError as exc:
            raise ProfileError(f"{source}: {exc}") from None

    @classmethod
    def from_graph(cls, graph: Graph, latency_s: dict[str, float] | None = None,
                   spread_s: dict[str, float] | None = None, **fields: Any) -> Profile:
        """A profile with ``graph``'s structure; latencies default to 0 (to be predicted)."""
        latency_s, spread_s = latency_s or {}, spread_s or {}
        nodes = tuple(
            NodeProfile(name=n.name, inputs=n.inputs, latency_s=latency_s.get(n.name, 0.0),
                        latency_spread_s=spread_s.get(n.name, 0.0), output_bytes=n.output_bytes,
                        op=n.op, flops=n.flops, param_bytes=n.param_bytes)
            for n in graph.compute_nodes
        )
        inputs = tuple(ModelInput(n.name, n.output_bytes, n.outputs[0].shape, n.outputs[0].dtype)
                       for n in graph if n.op == INPUT_OP)
        fields.setdefault("host", {})
        return cls(model=graph.name, input_bytes=graph.input_bytes, outputs=graph.outputs,
                   nodes=nodes, inputs=inputs, **fields)

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        return cls.from_dict(read_json(path, "profile file"), source=str(path))


def _require(data: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in data]
    if missing:
        raise ProfileError(f"{where}: missing required field(s) {', '.join(map(repr, missing))}")


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ProfileError(f"{where} must be a list, got {value!r}")
    return value


def _model_input(raw: Any, where: str) -> ModelInput:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: a model input is a JSON object, got {raw!r}")
    _require(raw, ("name", "bytes"), where)
    known = {k: raw[k] for k in raw if k in ModelInput.__dataclass_fields__}
    return ModelInput(**{**known, "shape": tuple(_list(raw.get("shape", []), f"{where}: 'shape'"))})


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where} must be a list of names, got {value!r}")
    return value


def _number(value: Any, where: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ProfileError(f"{where} must be a finite {'integer' if integer else 'number'}, got {value!r}")
    if value < 0:
        raise ProfileError(f"{where} is negative ({value!r}); it must be >= 0")


def _validate(p: Profile) -> None:
    if not isinstance(p.model, str) or not p.model:
        raise ProfileError(f"'model' must be a non-empty string, got {p.model!r}")
    if not isinstance(p.host, dict):
        raise ProfileError(f"'host' must be an object of host facts, got {p.host!r}")
    _number(p.input_bytes, "'input_bytes'", integer=True)
    if not p.nodes:
        raise ProfileError("'nodes' is empty; a profile needs at least one node")
    for label in ("model_latency_s", "model_latency_spread_s"):
        if getattr(p, label) is not None:
            _number(getattr(p, label), f"'{label}'")
    _number(p.batch, "'batch'", integer=True)
    if p.batch < 1:
        raise ProfileError(f"'batch' must be >= 1, got {p.batch!r}")
    if not isinstance(p.settings, dict):
        raise ProfileError(f"'settings' must be an object, got {p.settings!r}")
    if p.predicted is not None and not isinstance(p.predicted, dict):
        raise ProfileError(f"'predicted' must be an object or null, got {p.predicted!r}")
    for n in p.nodes:
        if not isinstance(n.name, str) or not n.name:
            raise ProfileError(f"node name must be a non-empty string, got {n.name!r}")
        if not isinstance(n.op, str):
            raise ProfileError(f"node {n.name!r}: 'op' must be a string, got {n.op!r}")
    position = {n.name: i for i, n in enumerate(p.nodes)}
    for m in p.inputs:
        if not isinstance(m.name, str) or not m.name:
            raise ProfileError(f"model input name must be a non-empty string, got {m.name!r}")
    input_names = {i.name for i in p.inputs}
    for m in p.inputs:
        where = f"model input {m.name!r}"
        if m.name in position or sum(o.name == m.name for o in p.inputs) > 1:
            raise ProfileError(f"{where} appears twice (as a node or as another model input)")
        _number(m.bytes, f"{where}: 'bytes'", integer=True)
        for d in m.shape:
            _number(d, f"{where}: 'shape'", integer=True)
        if not isinstance(m.dtype, str):
            raise ProfileError(f"{where}: 'dtype' must be a string, got {m.dtype!r}")
    if len(position) != len(p.nodes):
        dup = next(n.name for i, n in enumerate(p.nodes) if position[n.name] != i)
        raise ProfileError(f"node name {dup!r} appears twice")
    for i, n in enumerate(p.nodes):
        where = f"node {n.name!r}"
        _number(n.latency_s, f"{where}: 'latency_s'")
        _number(n.latency_spread_s, f"{where}: 'latency_spread_s'")
        _number(n.output_bytes, f"{where}: 'output_bytes'", integer=True)
        _number(n.flops, f"{where}: 'flops'", integer=True)
        _number(n.param_bytes, f"{where}: 'param_bytes'", integer=True)
        for src in n.inputs:
            if src in input_names:
                continue
            if src not in position:
                valid = sorted(input_names) + [m.name for m in p.nodes[max(0, i - 3):i]]
                raise ProfileError(f"{where} refers to unknown input {src!r}; inputs must name "
                                   f"earlier nodes or model inputs (e.g. {valid})")
            if position[src] >= i:
                cycle = _find_cycle(p.nodes, position, n.name)
                if cycle:
                    raise ProfileError(f"the nodes form a cycle: {' reads '.join(map(repr, cycle))}")
                raise ProfileError(f"{where} reads {src!r}, which comes later: list nodes in "
                                   "topological order")
    for out in p.outputs:
        if out not in position:
            raise ProfileError(f"output {out!r} is not a node of the profile")


def _find_cycle(nodes: tuple[NodeProfile, ...], position: dict[str, int], start: str) -> list[str]:
    """Names start, x, ..., start where each reads the next, or [] when there is no cycle."""
    reads = {n.name: [s for s in n.inputs if s in position] for n in nodes}
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for src in reads[name]:
            if src == start:
                return path + [start]
            if src not in seen:
                seen.add(src)
                stack.append((src, path + [src]))
    return []


def _lists(value: Any) -> Any:
    """Tuples become lists so the JSON reads naturally."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def read_json(path: str | Path, what: str) -> Any:
    """The JSON in the file at ``path`` (``what`` it is, for the errors), or a ProfileError
    saying that it does not exist, cannot be read or is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ProfileError(f"{what} {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ProfileError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
