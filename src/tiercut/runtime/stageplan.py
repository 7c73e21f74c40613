"""StagePlan: what the runtime needs from a Plan, as plain data with a stable id.

A StagePlan names the model, the tiers the data visits (device first; stage index = position)
and the stage index of every graph node. Its ``plan_id`` is the sha256 of its canonical JSON,
so a device and its servers agree on a plan by id after sending it once.

``build_stages`` turns a StagePlan into executable stages (resolve the model, build it with the
zoo's fixed seed, trace it on the example inputs, split); ``layout`` adds what the wire needs:
which values each tier receives and returns, and what each value must look like. Both are
cached per process, by plan id.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.fx as fx

from ..errors import PlanError  # raised here; importers still find it in this module
from ..graph.dag import Graph
from ..graph.split import Stage, split
from ..graph.trace import trace
from ..zoo import ZooEntry, resolve
from ..zoo.registry import parse_input
from . import onnx_model
from .plandivision import LOCAL_PEER, _check_division, _division, _divisions  # noqa: F401
from .signature import Signature, signature  # noqa: F401 (the layout's; importers use it)

FORMAT = "tiercut-stageplan/1"



@dataclass(frozen=True)
class StagePlan:
    model: str  # zoo name, module:factory, or an ONNX file's path (ending .onnx)
    tiers: tuple[str, ...]  # the tiers the data visits, device first; stage k runs on tiers[k]
    assignment: Mapping[str, int] = field(hash=False)  # node -> stage index
    input_shape: tuple[int, ...] | None = None  # for module:factory models without input_shape
    batch: int | None = None  # example batch for zoo models (None: the zoo's, i.e. 1)
    # one run of stage k divided across peer tier servers: {"stage": k, "first", "last",
    # "bounds": [row bounds], "peers": ["host:port", one per part]}, or a list of those for
    # several stages (at most one per stage: a cluster plan divides each stage on its own
    # nodes); None: undivided
    division: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = field(default=None,
                                                                            hash=False)
    # the model's inputs as ``--input`` specs (NAME:SHAPE:DTYPE[:LOW-HIGH]), replacing its
    # own: how a zoo or hf: model is served at another sequence length or image size
    inputs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_plan(self)

    @property
    def stages(self) -> int:
        return len(self.tiers)

    def division_of(self, k: int) -> Mapping[str, Any] | None:
        """The division of stage ``k``'s run, None where stage k is undivided."""
        return next((d for d in _divisions(self.division) if d.get("stage") == k), None)

    def canonical(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "tiers": list(self.tiers),
                "assignment": dict(sorted(self.assignment.items())),
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "batch": self.batch,
                **({"inputs": list(self.inputs)} if self.inputs else {}),
                **({"division": dict(self.division) if isinstance(self.division, Mapping)
                    else [dict(d) for d in self.division]}
                   if self.division is not None else {})}

    def to_json(self) -> str:
        return self._json

    # a StagePlan is immutable, so its JSON and id are computed once: every request names its
    # plan by id, and hashing the plan per request cost more than the request's own bookkeeping
    @functools.cached_property
    def _json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def plan_id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes, input_shape: Sequence[int] | None = None,
                  peers: Mapping[str, str] | None = None) -> "StagePlan":
        """A StagePlan's own JSON, or the Plan JSON ``tiercut plan --json`` prints."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise PlanError(f"plan is not valid JSON: {str(exc)[:200]}") from None
        return cls.from_dict(data, input_shape, peers)

    @classmethod
    def from_dict(cls, data: Any, input_shape: Sequence[int] | None = None,
                  peers: Mapping[str, str] | None = None) -> "StagePlan":
        if not isinstance(data, dict):
            raise PlanError(f"plan must be a JSON object, got {type(data).__name__}")
        if "route" in data:
            return cls.from_plan_dict(data, input_shape, peers)
        if data.get("format") != FORMAT:
            raise PlanError(f"plan field 'format' is {data.get('format')!r}; expected {FORMAT!r} "
                            "or a Plan from `tiercut plan --json` (with 'route')")
        shape = data.get("input_shape") or input_shape
        return cls(model=_field(data, "model", str), tiers=tuple(_field(data, "tiers", list)),
                   assignment=dict(_field(data, "assignment", dict)),
                   input_shape=_shape(shape), batch=data.get("batch"),
                   division=data.get("division"), inputs=_inputs(data.get("inputs")))

    @classmethod
    def from_plan_dict(cls, data: Mapping[str, Any], input_shape: Sequence[int] | None = None,
                       peers: Mapping[str, str] | None = None) -> "StagePlan":
        """From ``Plan.to_dict()``: tier order from ``hosts``, used tiers from ``route.tiers``;
        a ``division`` (``tiercut plan --divide``) needs ``peers``: host name -> host:port."""
        model = _field(data, "model", str)
        all_tiers = list(_field(data, "hosts", dict))
        route = _field(data, "route", dict)
        indices = route.get("tiers")
        if not isinstance(indices, list) or not indices or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise PlanError(f"plan field 'route.tiers' must be a non-empty list of tier indices, "
                            f"got {indices!r}")
        bad = [i for i in indices if not 0 <= i < len(all_tiers)]
        if bad:
            raise PlanError(f"plan field 'route.tiers' has indices {bad} outside the "
                            f"{len(all_tiers)} tiers {all_tiers}")
        tiers = tuple(all_tiers[i] for i in indices)
        assignment = _field(data, "assignment", dict)
        stage_of = {t: k for k, t in enumerate(tiers)}
        out = {}
        for node, tier in assignment.items():
            if tier not in stage_of:
                raise PlanError(f"plan field 'assignment' puts node {node!r} on tier {tier!r}, "
                                f"which is not on the route {list(tiers)}")
            out[node] = stage_of[tier]
        _check_private(data.get("private", []), assignment, all_tiers[0])
        return cls(model=model, tiers=tiers, assignment=out, input_shape=_shape(input_shape),
                   division=_division(data.get("division"), stage_of, peers,
                               {h: t for t, h in data["hosts"].items()}))

    @classmethod
    def from_assignment(cls, model: str, assignment: Mapping[str, int], tiers: Sequence[str],
                        input_shape: Sequence[int] | None = None,
                        batch: int | None = None,
                        inputs: Sequence[str] | None = None) -> "StagePlan":
        """From a node -> stage index assignment over ``tiers`` (device first)."""
        return cls(model=model, tiers=tuple(tiers), assignment=dict(assignment),
                   input_shape=_shape(input_shape), batch=batch,
                   inputs=tuple(inputs) if inputs else None)


def _check_private(private: Any, assignment: Mapping[str, Any], device: str) -> None:
    """A plan made under a private input lists the nodes that must stay on the device; an
    edited plan that moves one of them would send the input (or what reveals it) off it."""
    if not isinstance(private, list) or not all(isinstance(v, str) for v in private):
        raise PlanError(f"plan field 'private' must be a list of node names, got {private!r}")
    for node in private:
        if node not in assignment:
            raise PlanError(f"plan field 'private' names node {node!r}, which the assignment "
                            "does not place")
        if assignment[node] != device:
            raise PlanError(f"plan field 'private' keeps node {node!r} on the device "
                            f"({device!r}), but the assignment puts it on "
                            f"{assignment[node]!r}: the plan would send the private input off "
                            "the device; plan again with --private-input")


def _field(data: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise PlanError(f"plan has no field {name!r}")
    value = data[name]
    if not isinstance(value, kind):
        raise PlanError(f"plan field {name!r} must be a {kind.__name__}, got "
                        f"{type(value).__name__}")
    return value


def _shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    if not isinstance(shape, (list, tuple)) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise PlanError(f"plan field 'input_shape' must be a list of integers >= 1, got {shape!r}")
    return tuple(shape)


def _inputs(specs: Any) -> tuple[str, ...] | None:
    """The plan's ``inputs``: a list of ``--input`` specs, each parsed here so a bad one is a
    PlanError naming it before any model is built."""
    if specs is None:
        return None
    if not isinstance(specs, (list, tuple)) or not specs or \
            not all(isinstance(s, str) for s in specs):
        raise PlanError(f"plan field 'inputs' must be a list of NAME:SHAPE:DTYPE strings, got "
                        f"{specs!r}")
    for s in specs:
        try:
            parse_input(s)
        except Exception as exc:  # noqa: BLE001 -- any parse failure is the plan's fault
            raise PlanError(f"plan field 'inputs': {exc}") from None
    return tuple(specs)


def _check_plan(plan: StagePlan) -> None:
    if not isinstance(plan.model, str) or not plan.model:
        raise PlanError(f"plan field 'model' must be a non-empty string, got {plan.model!r}")
    if not plan.tiers or not all(isinstance(t, str) and t for t in plan.tiers):
        raise PlanError(f"plan field 'tiers' must be a non-empty list of names, got "
                        f"{list(plan.tiers)!r}")
    if len(set(plan.tiers)) != len(plan.tiers):
        raise PlanError(f"plan field 'tiers' repeats a tier: {list(plan.tiers)}")
    _inputs(plan.inputs)
    for node, stage in plan.assignment.items():
        if not isinstance(node, str) or isinstance(stage, bool) or not isinstance(stage, int) \
                or not 0 <= stage < len(plan.tiers):
            raise PlanError(f"plan field 'assignment' gives node {node!r} stage {stage!r}; stages "
                            f"are 0..{len(plan.tiers) - 1}, one per tier {list(plan.tiers)}")
    if plan.batch is not None and (isinstance(plan.batch, bool) or not isinstance(plan.batch, int)
                                   or plan.batch < 1):
        raise PlanError(f"plan field 'batch' must be an integer >= 1, got {plan.batch!r}")
    if plan.division is not None:
        _check_division(plan)


def input_elements(plan: StagePlan) -> int:
    """How many elements the example inputs of ``plan`` hold (a server checks this first)."""
    entry = model_entry(plan)
    return sum((plan.batch or spec.shape[0]) * math.prod(spec.shape[1:])
               for spec in entry.inputs)


def model_entry(plan: StagePlan) -> ZooEntry:
    if onnx_model.is_onnx(plan.model):  # an ONNX file: its inputs, from the file
        with _lock:
            return _graph(plan)[1]
    return resolve(plan.model, plan.input_shape, list(plan.inputs) if plan.inputs else None)


# --- building, cached per process -------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """What crosses where, for one plan: the wire's view of the split."""

    graph: Graph
    stages: tuple[Stage, ...]
    producer: Mapping[str, int]  # value -> the stage that produces it (inputs: 0)
    receives: tuple[tuple[str, ...], ...]  # [k]: values tier k receives from tier k-1
    returns: tuple[tuple[str, ...], ...]  # [k]: model outputs produced on stage k
    signatures: Mapping[str, Signature]  # every value that crosses a link or is an output

    def forwards(self, k: int) -> tuple[str, ...]:
        """Values tier k sends on to tier k+1."""
        return self.receives[k + 1] if k + 1 < len(self.stages) else ()


MAX_CACHED = 64  # plans (and traced models) kept per process
_lock = threading.Lock()
_graphs: dict[tuple, tuple[Graph, ZooEntry]] = {}
_layouts: dict[str, Layout] = {}


def build_stages(plan: StagePlan) -> tuple[Graph, list[Stage], ZooEntry]:
    """Resolve, build, trace and split the plan's model; cached per process by plan id."""
    lay = layout(plan)
    return lay.graph, list(lay.stages), model_entry(plan)


def layout(plan: StagePlan) -> Layout:
    key = plan.plan_id
    with _lock:
        if key in _layouts:
            return _layouts[key]
        graph, entry = _graph(plan)
        stages = (onnx_model.onnx_stages(graph, plan.assignment)
                  if onnx_model.is_onnx(plan.model) else split(graph, plan.assignment))
        if len(stages) > plan.stages:
            raise PlanError(f"plan has {len(stages)} stages but {plan.stages} tiers")
        stages += [_empty_stage(graph, k) for k in range(len(stages), plan.stages)]
        result = _layouts[key] = _make_layout(graph, stages, example_inputs(plan, entry))
        while len(_layouts) > MAX_CACHED:  # oldest first (dicts keep insertion order)
            del _layouts[next(iter(_layouts))]
        return result


def example_inputs(plan: StagePlan, entry: ZooEntry | None = None) -> tuple[torch.Tensor, ...]:
    entry = entry or model_entry(plan)
    if plan.batch is None:  # each input at its own size: a second input need not be batched
        return tuple(spec.example(spec.shape[0], seed=i) for i, spec in enumerate(entry.inputs))
    return entry.example_inputs(plan.batch)


def model_graph(model: str, input_shape: Sequence[int] | None = None,
                batch: int | None = None) -> Graph:
    """The traced Graph of ``model`` (to write assignments against); cached per process."""
    with _lock:
        return _graph(StagePlan(model, ("device",), {}, _shape(input_shape), batch))[0]


def _graph(plan: StagePlan) -> tuple[Graph, ZooEntry]:
    key = (plan.model, plan.input_shape, plan.batch, plan.inputs)
    if key not in _graphs and onnx_model.is_onnx(plan.model):
        graph = onnx_model.onnx_graph(plan.model, plan.input_shape)
        _graphs[key] = (graph, onnx_model.onnx_entry(graph))
    if key not in _graphs:
        entry = model_entry(plan)
        _graphs[key] = (trace(entry.build(), example_inputs(plan, entry), name=plan.model,
                              leaf_modules=entry.leaf_modules), entry)
        while len(_graphs) > MAX_CACHED:
            del _graphs[next(iter(_graphs))]
    return _graphs[key]


def _empty_stage(graph: Graph, k: int) -> Stage:
    g = fx.Graph()
    g.output(())
    return Stage(k, fx.GraphModule(torch.nn.Module(), g, f"{graph.name}_stage{k}"), (), (), ())


def _make_layout(graph: Graph, stages: list[Stage], inputs: tuple) -> Layout:
    producer = {name: 0 for name in graph.inputs}
    for stage in stages:
        producer.update({n: stage.index for n in stage.nodes})
    receives = []
    for k in range(len(stages)):
        later = dict.fromkeys(v for s in stages[k:] for v in s.inputs if producer[v] < k)
        receives.append(tuple(later) if k else ())
    returns = tuple(tuple(o for o in graph.outputs if producer[o] == k)
                    for k in range(len(stages)))
    env: dict[str, Any] = dict(zip(graph.inputs, inputs))
    with torch.inference_mode():
        for stage in stages:
            env.update(stage.run(env))
    wanted = {v for names in receives for v in names} | set(graph.outputs) | set(graph.inputs)
    signatures = {v: signature(env[v]) for v in wanted}
    return Layout(graph, tuple(stages), producer, tuple(receives), returns, signatures)
