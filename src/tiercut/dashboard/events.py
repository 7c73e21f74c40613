"""The dashboard's events: plain JSON-able dicts built from a plan and from each request's
``Measurement``, and checked before they are sent (``check``).

Four kinds, each with ``type`` and ``t`` (seconds since the run began; ``Dashboard.publish``
stamps it when missing):

* ``plan``: ``id``, ``model``, ``label``, ``tiers`` (per tier visited: ``name``, ``nodes``,
  ``predicted_s``), ``hops`` (``src``, ``dst``, ``tensors``, ``bytes``, ``codec``,
  ``predicted_s``), ``predicted_s``, and, for a plan from a decision table, ``break_even_bps``
  (the device-link rate below which the device alone is faster) and ``breakpoints_bps`` (the
  rates where the table's best plan changes).
* ``request``: ``plan`` (its id), ``total_s``, ``compute_s`` per tier, ``transfer_s`` and
  ``bytes`` per hop ("device-edge"), ``codec_s``, ``queue_s``, ``fallback``, ``fallback_s``,
  ``hedged``.
* ``estimate``: ``bps``, the device link's bandwidth estimate, and ``source`` (what made it).
* ``switch``: ``from`` and ``to``, plan ids, when the policy changes plan between requests.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

from ..errors import TiercutError
from ..planner.plan import Plan
from ..runtime.measurement import Measurement
from ..runtime.stageplan import StagePlan


class EventError(TiercutError, ValueError):
    """An event the dashboard cannot show; the message names the field and what it takes."""


def plan_event(plan: Plan | StagePlan | Mapping[str, Any], label: str = "",
               codecs: tuple[str, ...] | None = None, break_even_bps: float | None = None,
               breakpoints_bps: tuple[float, ...] = ()) -> dict[str, Any]:
    """A plan as the page draws it. ``plan``: a Plan, a StagePlan (no bytes or predictions:
    it has none), or the JSON of ``tiercut plan --json``. ``codecs``: the codec each hop runs
    with, when the runtime's differ from the plan's."""
    if isinstance(plan, StagePlan):
        tiers = list(plan.tiers)
        nodes = {t: [n for n, k in plan.assignment.items() if tiers[k] == t] for t in tiers}
        hops = [{"src": a, "dst": b, "tensors": [], "bytes": None, "codec": "raw",
                 "predicted_s": None} for a, b in zip(tiers, tiers[1:])]
        model, predicted, seconds = plan.model, None, {}
    else:
        data = plan.to_dict() if isinstance(plan, Plan) else dict(plan)
        hosts = data.get("hosts") or {}
        seconds = data.get("tier_seconds") or {}
        tiers = [t for t, h in hosts.items() if h is not None] or list(seconds)
        nodes = {t: [n for n, tier in data["assignment"].items() if tier == t] for t in tiers}
        hops = [{"src": h["src"], "dst": h["dst"], "tensors": list(h["tensors"]),
                 "bytes": int(h["bytes"]), "codec": h.get("codec", "raw"),
                 "predicted_s": float(h["seconds"])} for h in data.get("hops", ())]
        model, predicted = data["model"], data.get("total_s")
    if codecs is not None:
        for hop, codec in zip(hops, codecs):
            hop["codec"] = codec
    return {"type": "plan", "id": plan_id(model, nodes), "model": model, "label": label,
            "tiers": [{"name": t, "nodes": nodes[t], "predicted_s": seconds.get(t)}
                      for t in tiers],
            "hops": hops, "predicted_s": predicted, "break_even_bps": _rate(break_even_bps),
            "breakpoints_bps": [float(b) for b in breakpoints_bps]}


def plan_id(model: str, nodes: Mapping[str, list[str]]) -> str:
    """The same cut gets the same id however it was given (Plan, StagePlan or JSON)."""
    text = model + ";" + ";".join(f"{t}:{','.join(sorted(ns))}" for t, ns in nodes.items())
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def request_event(m: Measurement, plan: str) -> dict[str, Any]:
    """One request's Measurement: where its time went, for the plan with id ``plan``."""
    compute = {"device": m.device_s}
    codec_s, queue_s = m.encode_s + m.decode_s, 0.0
    for s in m.servers:
        compute[s.tier] = compute.get(s.tier, 0.0) + s.compute_s
        codec_s += s.decode_s + s.encode_s
        queue_s += s.queue_s
    return {"type": "request", "id": m.request_id, "plan": plan, "total_s": m.total_s,
            "compute_s": compute, "transfer_s": {f"{h.src}-{h.dst}": h.seconds for h in m.hops},
            "bytes": {f"{h.src}-{h.dst}": h.bytes_sent + h.bytes_returned for h in m.hops},
            "codec_s": codec_s, "queue_s": queue_s, "fallback": m.fallback,
            "fallback_s": m.fallback_s, "hedged": m.hedged}


def estimate_event(bps: float, source: str = "estimate") -> dict[str, Any]:
    return {"type": "estimate", "bps": bps, "source": source}


def switch_event(old: str, new: str) -> dict[str, Any]:
    return {"type": "switch", "from": old, "to": new}


def _rate(value: float | None) -> float | None:
    """JSON has no infinity: a plan never faster than the device says so with None."""
    return None if value is None or not math.isfinite(value) else float(value)


_NUMBER, _TEXT, _MAP, _LIST, _FLAG = "a number", "a string", "an object", "a list", "true/false"
FIELDS = {  # type -> field -> what it must be
    "plan": {"id": _TEXT, "model": _TEXT, "label": _TEXT, "tiers": _LIST, "hops": _LIST},
    "request": {"id": _TEXT, "plan": _TEXT, "total_s": _NUMBER, "compute_s": _MAP,
                "transfer_s": _MAP, "fallback": _FLAG},
    "estimate": {"bps": _NUMBER},
    "switch": {"from": _TEXT, "to": _TEXT},
}
_IS = {_NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
       and math.isfinite(v),
       _TEXT: lambda v: isinstance(v, str), _MAP: lambda v: isinstance(v, dict),
       _LIST: lambda v: isinstance(v, list), _FLAG: lambda v: isinstance(v, bool)}


def check(event: Any) -> dict[str, Any]:
    """``event`` if the page can draw it; else EventError naming the field."""
    if not isinstance(event, dict):
        raise EventError(f"an event is a dict with a 'type', got {type(event).__name__}")
    kind = event.get("type")
    if kind not in FIELDS:
        raise EventError(f"event field 'type' is {kind!r}; known: {', '.join(FIELDS)}")
    for name, what in {"t": _NUMBER, **FIELDS[kind]}.items():
        if name not in event:
            raise EventError(f"{kind} event has no field {name!r} ({what})")
        if not _IS[what](event[name]):
            raise EventError(f"{kind} event field {name!r} is {event[name]!r}; it takes {what}")
    for name in ("compute_s", "transfer_s") if kind == "request" else ():
        for key, value in event[name].items():
            if not _IS[_NUMBER](value):
                raise EventError(f"{kind} event field {name!r}[{key!r}] is {value!r}; "
                                 "it takes a number of seconds")
    if kind == "estimate" and not event["bps"] > 0:
        raise EventError(f"estimate event field 'bps' is {event['bps']!r}; it takes a rate > 0")
    if kind == "plan":
        for i, tier in enumerate(event["tiers"]):
            if not isinstance(tier, dict) or not isinstance(tier.get("name"), str) \
                    or not isinstance(tier.get("nodes"), list):
                raise EventError(f"plan event field 'tiers'[{i}] is {tier!r}; it takes "
                                 "{'name': str, 'nodes': [str, ...]}")
    return event
