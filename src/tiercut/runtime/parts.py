"""One part of a layer range divided across servers, on a tier server: the ``RunPart`` RPC.

A run of nodes ``first`` .. ``last`` of a hosted model is tiled (tiercut.decompose.SpatialRun);
a device (fanout.py) sends each server the run's source cropped to what one part reads (its
halo included) and the server answers that part's rectangle of ``last``'s output. There is no
plan and no Prepare: the server traces the model itself, as Prepare's path does
(stageplan.model_graph, cached per process), and keeps each SpatialRun by (model, batch, first,
last) in this process (``spatial_run``, at most MAX_RUNS).

Everything is checked before anything runs, and refused with a status naming the bad value and
what is accepted: a model this server does not host (NOT_FOUND, with the hosted ones); run ends
that are not nodes or not tileable (INVALID_ARGUMENT, the DecomposeError's message); a
rectangle outside ``last``'s output; a source that is not the crop the part reads (its shape
and dtype); a corrupt frame; an unknown reply codec. A frame or batch over the server's limits
is RESOURCE_EXHAUSTED. The received frame is decoded by tiercut.codecs (wire.py): nothing is
unpickled. The part runs on the server's worker pool (workers.compute, as a stage does), so
the event loop keeps serving, and a part whose deadline passes while it waits is dropped unrun.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Sequence

import grpc

from .. import codecs
from ..decompose import DecomposeError, Part, SpatialRun
from ..errors import TiercutError, UnknownModelError
from . import tiercut_pb2 as pb
from . import wire
from .admission import Admission
from .stageplan import Signature, StagePlan, input_elements, model_graph
from .status import Abort, check_codec
from .workers import compute

MAX_RUNS = 64  # SpatialRuns kept per process, the oldest dropped first
MAX_NAME = 256  # characters of a node name; a longer one names no node
_lock = threading.Lock()
_runs: dict[tuple[str, int | None, str, str], SpatialRun] = {}


def spatial_run(model: str, first: str, last: str, batch: int | None = None) -> SpatialRun:
    """The nodes ``first`` .. ``last`` of ``model`` (a zoo name) as a SpatialRun, traced on the
    zoo's example inputs with ``batch`` (None: the zoo's); cached per process. Raises
    UnknownModelError for an unknown model, DecomposeError for a run that cannot be tiled."""
    key = (model, batch, first, last)
    with _lock:
        found = _runs.get(key)
    if found is not None:
        return found
    run = SpatialRun(model_graph(model, batch=batch), first, last)  # the graph is cached there
    with _lock:
        run = _runs.setdefault(key, run)
        while len(_runs) > MAX_RUNS:  # oldest first (dicts keep insertion order)
            del _runs[next(iter(_runs))]
    return run


def source_signature(run: SpatialRun, part: Part) -> Signature:
    """What the source crop of ``part`` must be: (N, C) of the run's source, the part's rows
    and columns of it, the source's dtype."""
    n, c = run.shape[run.source][:2]
    (r0, r1), (c0, c1) = part.source
    return Signature("tensor", (n, c, r1 - r0, c1 - c0),
                     run.graph[run.source].outputs[0].dtype)


def output_signature(run: SpatialRun, part: Part) -> Signature:
    """What the part's output is: (N, C) of ``last``'s output, the part's rows and columns."""
    n, c = run.out_shape[:2]
    (r0, r1), (c0, c1) = part.out
    return Signature("tensor", (n, c, r1 - r0, c1 - c0), run.graph[run.last].outputs[0].dtype)


class _PartStage:
    """A part in the shape workers.compute runs a prepared stage: ``runner.run(values)``."""

    inline = False  # a layer range's worth of work: always on a worker thread

    def __init__(self, run: SpatialRun, part: Part):
        self.spatial, self.part, self.runner = run, part, self

    def run(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"out": self.spatial.run_part(self.part, values["source"])}


class PartRunner:
    """The RunPart work of one tier server hosting ``models``, its frames checked against
    ``limits``."""

    def __init__(self, models: Sequence[str], limits: codecs.Limits = codecs.DEFAULT_LIMITS):
        self.models, self.limits = tuple(models), limits

    async def run(self, request: pb.RunPartRequest, endpoint: str, deadline: float | None,
                  pool: concurrent.futures.Executor | None,
                  admission: Admission) -> pb.RunPartReply:
        """Check ``request``, compute its part on ``pool`` and build the reply; raises Abort.
        ``deadline``: time.monotonic() by which the caller gives up."""
        t0 = time.perf_counter()
        bad = grpc.StatusCode.INVALID_ARGUMENT
        where = f"RunPart on {endpoint}"
        model = request.model
        if model not in self.models:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"{where}: model {model[:200]!r} is not hosted here; this server hosts "
                        f"{list(self.models)}")
        reply_codec = request.reply_codec or "raw"
        check_codec(reply_codec, f"{where}: reply_codec")
        run = await self._run_of(model, request.first, request.last, request.batch or None,
                                 where)
        if not request.HasField("out"):
            raise Abort(bad, f"{where}: no output rectangle (out); give rows and columns "
                             f"within {run.last!r}'s {run.out_shape[2]}x{run.out_shape[3]}")
        r = request.out
        try:
            part = run.part(((r.row_lo, r.row_hi), (r.col_lo, r.col_hi)))
        except DecomposeError as exc:
            raise Abort(bad, f"{where}: {exc}") from None
        where = f"part {part.out} of {model} {run.names[0]}..{run.last} ({endpoint})"
        if not request.HasField("source"):
            raise Abort(bad, f"{where}: no source; send the run's source {run.source!r} "
                             f"cropped to rows and columns {part.source}")
        try:
            source, bytes_in = wire.from_value(request.source, self.limits)
        except wire.LimitError as exc:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{where}: source: {exc}") from None
        except wire.WireError as exc:
            raise Abort(bad, f"{where}: source: {exc}") from None
        want, got = source_signature(run, part), wire.signature_or_none(source)
        if got != want:
            raise Abort(bad, f"{where}: the source should be {want.describe()} (the run's "
                             f"source {run.source!r} cropped to rows and columns "
                             f"{part.source}), got "
                             f"{got.describe() if got else type(source).__name__}")
        produced, queue_s, compute_s = await compute(_PartStage(run, part),  # type: ignore
                                                     {"source": source}, where, deadline,
                                                     pool, admission)
        reply = pb.RunPartReply(request_id=request.request_id, server=endpoint,
                                queue_s=queue_s, compute_s=compute_s, bytes_in=bytes_in)
        try:
            reply.bytes_out = wire.fill_value(reply.output, produced["out"], reply_codec)
        except (wire.WireError, codecs.CodecError) as exc:
            raise Abort(grpc.StatusCode.INTERNAL, f"{where}: cannot encode the part with "
                                                  f"{reply_codec!r}: {exc}") from None
        admission.count_served()
        reply.load.CopyFrom(wire.load_to_pb(admission.load()))
        reply.total_s = time.perf_counter() - t0
        return reply

    async def _run_of(self, model: str, first: str, last: str, batch: int | None,
                      where: str) -> SpatialRun:
        """The SpatialRun the request names, traced off the event loop; raises Abort."""
        for label, name in (("first", first), ("last", last)):
            if not name or len(name) > MAX_NAME:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{where}: run end {label}={name[:80]!r} is not a node name (give "
                            f"a node of {model}'s graph, at most {MAX_NAME} characters)")
        try:
            elements = await asyncio.to_thread(
                input_elements, StagePlan(model, ("device",), {}, batch=batch))
        except UnknownModelError as exc:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{where}: {exc}") from None
        if elements > self.limits.max_elements:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{where}: batch {batch} gives {model} inputs of {elements} elements, "
                        f"over this server's limit of {self.limits.max_elements}")
        try:
            return await asyncio.to_thread(spatial_run, model, first, last, batch)
        except UnknownModelError as exc:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{where}: {exc}") from None
        except DecomposeError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {exc}") from None
        except TiercutError as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"{where}: cannot trace {model}: {exc}") from None
        except Exception as exc:  # a model's bug must not end the call without a status
            raise Abort(grpc.StatusCode.INTERNAL, f"{where}: building {model} failed: "
                                                  f"{type(exc).__name__}: {exc}") from None
