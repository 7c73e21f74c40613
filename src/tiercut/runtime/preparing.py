"""Preparing one stage of a plan on one tier server: the PrepareRequest the device client sends
(its stage, the next tier's hosts to forward to, the codec of the hop after it) and the call,
with its failures sorted into "try another host" (``Unreachable``) and "the server refused"
(``RemoteError``). The client's ``aprepare`` and a hand-over's make step both use it."""
from __future__ import annotations

from typing import Sequence

import grpc

from . import tiercut_pb2 as pb
from . import tiercut_pb2_grpc as pb_grpc
from .fallback import FALLBACK_CODES, RemoteError, Unreachable
from .stageplan import StagePlan


def prepare_request(plan: StagePlan, plan_json: str, stage: int,
                    next_hosts: Sequence[str], forward_codec: str) -> pb.PrepareRequest:
    """What a server of ``stage``'s tier is sent: it forwards to ``next_hosts`` (the first,
    failing over to the rest) with ``forward_codec``; the last tier forwards nowhere."""
    return pb.PrepareRequest(plan_json=plan_json, stage=stage,
                             next_endpoint=next_hosts[0] if next_hosts else "",
                             next_alternates=tuple(next_hosts[1:]), forward_codec=forward_codec)


async def prepare_on(stub: pb_grpc.TierServerStub, request: pb.PrepareRequest, host: str,
                     plan: StagePlan, timeout: float,
                     metadata: Sequence[tuple[str, str]]) -> None:
    """Prepare ``request`` on ``host``. Unreachable when it cannot be reached or is busy (the
    caller tries another host), RemoteError when it refuses the plan or answers for another."""
    try:
        reply = await stub.Prepare(request, timeout=timeout, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in FALLBACK_CODES:
            raise Unreachable(f"Prepare on {host} ({plan.tiers[request.stage]}): "
                              f"{exc.code().name}: {exc.details()}", host) from None
        raise RemoteError(exc.code(), exc.details(), host) from None
    if reply.plan_id != plan.plan_id:
        raise RemoteError(grpc.StatusCode.INTERNAL, f"plan id {reply.plan_id[:12]} differs "
                          f"from ours {plan.plan_id[:12]}", host)
