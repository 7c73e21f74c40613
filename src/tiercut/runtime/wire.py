"""The one module that converts between Python values and the wire schema (tiercut.proto).

Tensors become one tiercut.codecs frame each; the non-tensor values a split can pass (ints,
floats, bools, None, torch.Size, tuples and lists of these) become typed fields. Nothing is
pickled. Decoding checks every received value against the Signature the plan expects before
anything runs, and raises WireError naming the value, what was expected and what came.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import torch

from .. import codecs
from ..errors import TiercutError
from . import tiercut_pb2 as pb
from .stageplan import Signature, signature

MAX_DEPTH = 32  # nesting of tuples inside tuples; traced models stay far below


class WireError(TiercutError, ValueError):
    """A received value that cannot be decoded or does not fit what the plan expects."""


class LimitError(WireError):
    """A received value over this process's size limits."""


@dataclass(frozen=True)
class Load:
    queue_depth: int = 0  # requests waiting for a compute worker
    in_flight: int = 0  # requests being handled
    service_s: float = 0.0  # EWMA of compute seconds per request
    served: int = 0
    max_in_flight: int = 0  # the server's bound on in_flight (0 = none)
    shed: int = 0  # requests refused because of load since start
    expired: int = 0  # requests dropped unrun because their deadline passed while queued
    cancelled: int = 0  # requests dropped unrun because their sender cancelled them

    @property
    def utilisation(self) -> float:
        """in_flight / max_in_flight (0 when unbounded)."""
        return self.in_flight / self.max_in_flight if self.max_in_flight else 0.0


@dataclass(frozen=True)
class ServerTiming:
    """One server's account of one request (seconds, measured by that server)."""

    server: str
    tier: str
    stage: int
    queue_s: float
    compute_s: float
    decode_s: float
    encode_s: float
    forward_s: float
    total_s: float
    bytes_in: int
    bytes_forwarded: int
    bytes_out: int
    load: Load


# --- values ------------------------------------------------------------------------------------

def fill_value(msg: pb.Value, obj: Any, codec: str = "raw", _depth: int = 0) -> int:
    """Write ``obj`` into ``msg`` in place; return the tensor frame bytes written.

    In place, because protobuf copies a submessage passed to a constructor (for a 1 MiB
    tensor that copy cost more than the whole hop)."""
    if _depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, torch.Tensor):
        frame = codecs.encode(obj, codec)
        msg.tensor = frame
        return len(frame)
    if isinstance(obj, bool):
        msg.boolean = obj
    elif isinstance(obj, int):
        msg.int = obj
    elif isinstance(obj, float):
        msg.float = obj
    elif obj is None:
        msg.none.SetInParent()
    elif isinstance(obj, (tuple, list)):
        kind = "size" if isinstance(obj, torch.Size) else "list" if isinstance(obj, list) \
            else "tuple"
        seq = getattr(msg, kind)
        seq.SetInParent()  # an empty tuple is still a tuple
        return sum(fill_value(seq.items.add(), item, codec, _depth + 1) for item in obj)
    else:
        raise WireError(f"a {type(obj).__name__} cannot be sent; only tensors, ints, floats, "
                        "bools, None and tuples or lists of them cross a link")
    return 0


def from_value(msg: pb.Value, limits: codecs.Limits = codecs.DEFAULT_LIMITS,
               _depth: int = 0) -> tuple[Any, int]:
    """The Python value of ``msg``, and the tensor frame bytes it held."""
    if _depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = msg.WhichOneof("kind")
    if kind == "tensor":
        frame = msg.tensor
        if len(frame) > limits.max_bytes:
            raise LimitError(f"tensor frame of {len(frame)} bytes is over the limit of "
                             f"{limits.max_bytes} bytes")
        try:
            return codecs.decode(frame, limits), len(frame)
        except codecs.CodecError as exc:
            if "limit" in str(exc).lower():
                raise LimitError(f"tensor frame rejected: {exc}") from None
            raise WireError(f"undecodable tensor frame: {exc}") from None
        except Exception as exc:  # a codec bug must not take the server down
            raise WireError(f"undecodable tensor frame: {type(exc).__name__}: {exc}") from None
    if kind == "int":
        return msg.int, 0
    if kind == "float":
        return msg.float, 0
    if kind == "boolean":
        return msg.boolean, 0
    if kind == "none":
        return None, 0
    if kind in ("tuple", "list", "size"):
        items, total = [], 0
        for item in getattr(msg, kind).items:
            value, n = from_value(item, limits, _depth + 1)
            items.append(value)
            total += n
        if kind == "size":
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
                raise WireError("a torch.Size value holds something other than ints")
            return torch.Size(items), total
        return (items if kind == "list" else tuple(items)), total
    raise WireError("value is empty (no field of Value is set)")


def encode_values(values: Mapping[str, Any], codec: str = "raw",
                  out: Any = None) -> tuple[Any, int]:
    """Append one NamedValue per value to ``out`` (a repeated NamedValue field, e.g.
    ``request.values``; a fresh one when None); return it and the tensor frame bytes."""
    if out is None:
        out = pb.InferRequest().values
    total = 0
    for name, obj in values.items():
        item = out.add(name=name)
        try:
            total += fill_value(item.value, obj, codec)
        except codecs.CodecError as exc:
            raise WireError(f"value {name!r}: cannot encode with codec {codec!r}: {exc}") from None
        except WireError as exc:
            raise WireError(f"value {name!r}: {exc}") from None
    return out, total


def decode_values(named: Iterable[pb.NamedValue],
                  limits: codecs.Limits = codecs.DEFAULT_LIMITS) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    total = 0
    for item in named:
        if item.name in out:
            raise WireError(f"value {item.name!r} is sent twice")
        if not item.HasField("value"):
            raise WireError(f"value {item.name!r} is empty")
        try:
            out[item.name], n = from_value(item.value, limits)
        except LimitError as exc:
            raise LimitError(f"value {item.name!r}: {exc}") from None
        except WireError as exc:
            raise WireError(f"value {item.name!r}: {exc}") from None
        total += n
    return out, total


def check_values(values: Mapping[str, Any], expected: Sequence[str],
                 signatures: Mapping[str, Signature], where: str) -> None:
    """Raise WireError unless ``values`` holds exactly ``expected``, each of its signature."""
    missing = [n for n in expected if n not in values]
    unexpected = [n for n in values if n not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing values {missing}")
        if unexpected:
            parts.append(f"unexpected values {unexpected}")
        raise WireError(f"{where}: {'; '.join(parts)}; this stage expects exactly "
                        f"{list(expected)}")
    for name in expected:
        want, value = signatures[name], values[name]
        if want.kind == "tensor" and type(value) is torch.Tensor and value.shape == want.shape \
                and str(value.dtype)[6:] == want.dtype:  # "torch.float32": the common case,
            continue  # per request, without building a Signature
        got = signature_or_none(value)
        if got != want:
            raise WireError(f"{where}: value {name!r} should be {want.describe()}, got "
                            f"{got.describe() if got else type(values[name]).__name__}")


def signature_or_none(value: Any) -> Signature | None:
    try:
        return signature(value)
    except TiercutError:
        return None


# --- timings and load --------------------------------------------------------------------------

def load_to_pb(load: Load) -> pb.Load:
    return pb.Load(queue_depth=load.queue_depth, in_flight=load.in_flight,
                   service_s=load.service_s, served=load.served,
                   max_in_flight=load.max_in_flight, shed=load.shed, expired=load.expired,
                   cancelled=load.cancelled)


def load_from_pb(msg: pb.Load) -> Load:
    return Load(msg.queue_depth, msg.in_flight, msg.service_s, msg.served, msg.max_in_flight,
                msg.shed, msg.expired, msg.cancelled)


LOAD_TRAILER = "tiercut-load"  # trailing metadata of a shed request: Load.to_text()


def load_to_text(load: Load) -> str:
    return (f"queue_depth={load.queue_depth};in_flight={load.in_flight};"
            f"max_in_flight={load.max_in_flight};service_s={load.service_s:.6f};"
            f"served={load.served};shed={load.shed};expired={load.expired};"
            f"cancelled={load.cancelled}")


def load_from_text(text: str) -> Load | None:
    """The Load in a shed request's trailer; None when it cannot be read."""
    try:
        fields = dict(part.split("=", 1) for part in text.split(";") if part)
        return Load(int(fields["queue_depth"]), int(fields["in_flight"]),
                    float(fields["service_s"]), int(fields["served"]),
                    int(fields["max_in_flight"]), int(fields["shed"]), int(fields["expired"]),
                    int(fields.get("cancelled", 0)))  # older servers do not send it
    except (KeyError, ValueError):
        return None


def timing_from_pb(msg: pb.Timing) -> ServerTiming:
    return ServerTiming(msg.server, msg.tier, msg.stage, msg.queue_s, msg.compute_s, msg.decode_s,
                        msg.encode_s, msg.forward_s, msg.total_s, msg.bytes_in,
                        msg.bytes_forwarded, msg.bytes_out, load_from_pb(msg.load))


def frame_bytes(named: Iterable[pb.NamedValue]) -> int:
    """Tensor frame bytes in already-encoded values (for values passed through unchanged)."""
    return sum(_frame_bytes(item.value) for item in named)


def _frame_bytes(value: pb.Value) -> int:
    kind = value.WhichOneof("kind")
    if kind == "tensor":
        return len(value.tensor)
    if kind in ("tuple", "list", "size"):
        return sum(_frame_bytes(v) for v in getattr(value, kind).items)
    return 0
