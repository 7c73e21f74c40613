"""A survey of the nodes found on the LAN: which answer, how fast each runs a model against
this host, and the links between every two of them (this host included); and the cluster
file (tiercut.cluster.load_cluster's YAML) that describes what was measured.

Speeds are measured as testbed.run.measure_speeds does (a plan that puts the whole model on
the node, its reported compute seconds, the median of a few requests, against the sum of the
reference profile's node seconds), per node, so that one node failing is reported beside the
others' figures rather than ending the survey.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import grpc

from ..runtime import tiercut_pb2 as pb
from ..runtime import tiercut_pb2_grpc as pb_grpc
from . import links as _links
from .links import LinkError, LinkEstimate
from .record import BadRecord, NodeRecord, available_cpus, available_memory

HEALTH_TIMEOUT_S = 3.0


class SurveyError(BadRecord):
    """Nothing to survey, or a survey that cannot be written as a cluster."""


@dataclass
class Node:
    record: NodeRecord
    problem: str = ""  # why it is left out ("" when it answered)
    speed: float | None = None  # whole-model speed against the reference profile

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class Survey:
    here: str
    here_cpus: float
    here_memory: int
    nodes: list[Node]
    model: str | None = None
    here_speed: float | None = None
    # (a, b) -> the link measured from a to b, or why it could not be
    links: dict[tuple[str, str], LinkEstimate | str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def answered(self) -> list[Node]:
        return [n for n in self.nodes if n.ok]

    def link(self, a: str, b: str) -> LinkEstimate | str | None:
        return self.links.get((a, b), self.links.get((b, a)))

    def to_dict(self) -> dict[str, Any]:
        def link(value: LinkEstimate | str) -> Any:
            return value if isinstance(value, str) else {
                "rate_bps": value.rate_bps, "delay_s": value.delay_s,
                "lower_bound": value.bounded, "probes": value.samples}

        return {"here": {"name": self.here, "cpus": self.here_cpus, "memory": self.here_memory,
                         "speed": self.here_speed},
                "model": self.model,
                "nodes": [{"name": n.name, "endpoint": n.record.endpoint,
                           "models": list(n.record.models), "cpus": n.record.cpus,
                           "memory": n.record.memory, "version": n.record.version,
                           "speed": n.speed, "problem": n.problem or None} for n in self.nodes],
                "links": [{"from": a, "to": b, **({"error": v} if isinstance(v, str)
                                                   else link(v))}
                          for (a, b), v in self.links.items()],
                "warnings": self.warnings}


def survey(records: Sequence[NodeRecord], model: str | None = None, here: str = "here",
           reference: Any = None, sizes: Sequence[int] = _links.SIZES,
           repeat: int = _links.REPEAT, log: Callable[[str], None] = lambda _: None) -> Survey:
    """Check, time and probe ``records``; ``reference``: the model's profile on this host
    (required with ``model``: the speeds are against it)."""
    if not records:
        raise SurveyError("no tiercut nodes to survey")
    if any(r.name == here for r in records):
        raise SurveyError(f"a node announces the name {here!r}, which this host takes as the "
                          "source; give this host another name (--name)")
    _links.check_sizes(sizes, repeat)
    s = Survey(here, available_cpus(), available_memory(), [Node(r) for r in records], model)
    for n in s.nodes:
        n.problem = _health(n.record)
    ok = s.answered
    if model is not None:
        s.here_speed = here_speed(model, reference)
        for n in ok:
            log(f"timing {model} on {n.name}")
            n.speed, problem = node_speed(model, reference, n.record)
            if problem:
                s.warnings.append(f"{n.name}: no speed for {model}: {problem}")
    for n in ok:
        log(f"probing {here} -> {n.name}")
        s.links[(here, n.name)] = _measured(lambda: _links.probe_here(
            n.record.endpoint, sizes, repeat))
    for a, b in itertools.combinations(ok, 2):  # one direction per pair: 'A-B' covers both
        log(f"probing {a.name} -> {b.name}")
        s.links[(a.name, b.name)] = _measured(lambda: _links.probe_peer(
            a.record.endpoint, b.record.endpoint, sizes, repeat))
    return s


def _measured(measure: Callable[[], LinkEstimate]) -> LinkEstimate | str:
    try:
        return measure()
    except LinkError as exc:
        return str(exc)


def _health(record: NodeRecord) -> str:
    """"" when the node answers Health as serving with the models it announced; else why not."""
    with grpc.insecure_channel(record.endpoint) as channel:
        try:
            reply = pb_grpc.TierServerStub(channel).Health(pb.HealthRequest(),
                                                            timeout=HEALTH_TIMEOUT_S)
        except grpc.RpcError as exc:
            return (f"unreachable at {record.endpoint} ({exc.code().name}: "
                    f"{(exc.details() or '').splitlines()[0][:120]})")
    if reply.status != pb.HealthReply.SERVING:
        return f"at {record.endpoint} answers {pb.HealthReply.Status.Name(reply.status)}"
    return ""


def here_speed(model: str, reference: Any, repeat: int = 5) -> float:
    """This host's whole-model speed against its own profile (one thread, as profiled)."""
    import torch

    from ..runtime.speed import local_speed
    from ..zoo import entry

    e = entry(model)
    module, inputs = e.build().eval(), e.example_inputs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return local_speed(lambda: module(*inputs), reference, repeat)
    finally:
        torch.set_num_threads(threads)


def node_speed(model: str, reference: Any, record: NodeRecord, repeat: int = 5
               ) -> tuple[float | None, str]:
    """(speed, "") of ``record``'s node on the whole model, or (None, why not)."""
    from ..errors import TiercutError
    from ..runtime.speed import server_speed
    from ..runtime.stageplan import StagePlan, example_inputs

    if model not in record.models:
        return None, f"it hosts {', '.join(record.models)}, not {model}"
    try:
        inputs = example_inputs(StagePlan.from_assignment(
            model, {n.name: 1 for n in reference.nodes}, ("device", record.name)))
        return server_speed(model, reference, record.endpoint, inputs, record.name, repeat,
                            fallback=False), ""
    except (TiercutError, grpc.RpcError, OSError) as exc:
        return None, str(exc).splitlines()[0][:200]


def cluster_dict(s: Survey, reference_file: str) -> dict[str, Any]:
    """The cluster file's mapping: this host as source and sink, the nodes that answered and
    ran the model, and every link between them that was measured."""
    if s.model is None or s.here_speed is None:
        raise SurveyError("a cluster file needs the nodes' speeds: give --model")
    nodes = [n for n in s.answered if n.speed is not None]
    if not nodes:
        raise SurveyError(f"no node answered with a speed for {s.model}; nothing to write")
    entries = [_node(s.here, s.here_speed, s.here_memory)]
    entries += [_node(n.name, n.speed, n.record.memory) for n in nodes]
    names = [s.here] + [n.name for n in nodes]
    link_values: dict[str, str] = {}
    missing = []
    for a, b in itertools.combinations(names, 2):
        value = s.link(a, b)
        if isinstance(value, LinkEstimate):
            link_values[f"{a}-{b}"] = value.yaml_value()
        else:
            missing.append(f"{a}-{b}")
    data: dict[str, Any] = {"reference": reference_file, "source": s.here, "sink": s.here,
                            "nodes": entries, "links": link_values}
    if missing:  # the planner needs every pair: the slowest link measured stands in
        measured = [v for v in s.links.values() if isinstance(v, LinkEstimate)]
        if not measured:
            raise SurveyError("no link could be measured; nothing to write")
        slowest = min(measured, key=lambda v: v.rate_bps)
        data["links"] = {"default": slowest.yaml_value(), **link_values}
        s.warnings.append(f"links {', '.join(missing)} were not measured: the file gives them "
                          f"the slowest measured link ({slowest.text()}) as its default")
    return data


def _node(name: str, speed: float, memory: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "speed": round(float(speed), 4)}
    if memory > 0:
        entry["memory"] = f"{max(1, memory >> 20)}mib"  # rounded down: what it surely has
    return entry
