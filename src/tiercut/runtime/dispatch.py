"""The table from RPC names to a TierServer's handlers, registered with our own request
decoding: a request gRPC cannot parse becomes ``Undecodable`` and is answered INVALID_ARGUMENT."""
from __future__ import annotations

from typing import Any, Callable

import grpc

from . import tiercut_pb2 as pb


class Undecodable:
    """What a request that is not valid protobuf becomes: answered INVALID_ARGUMENT."""

    def __init__(self, kind: str, error: Exception):
        self.message = f"request is not a valid {kind}: {error}"


def add_servicer(servicer: Any, server: grpc.aio.Server) -> None:
    """As the generated add_TierServerServicer_to_server, but a request gRPC cannot parse is
    answered INVALID_ARGUMENT by us rather than UNKNOWN with a traceback in the log (a flood
    of garbage must not flood the log). ``servicer``: a TierServer."""
    from google.protobuf.message import DecodeError

    def handler(method: Callable, request_type: Any, reply_type: Any) -> Any:
        def deserialize(data: bytes) -> Any:
            try:
                return request_type.FromString(data)
            except (DecodeError, RuntimeError, ValueError) as exc:
                return Undecodable(request_type.DESCRIPTOR.name, exc)

        async def call(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await method(request, context)

        return grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=deserialize,
            response_serializer=reply_type.SerializeToString)

    def stream_deserialize(data: bytes) -> Any:
        try:
            return pb.InferRequest.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return Undecodable("InferRequest", exc)

    handlers = {"Prepare": handler(servicer.Prepare, pb.PrepareRequest, pb.PrepareReply),
                "Infer": handler(servicer.Infer, pb.InferRequest, pb.InferReply),
                "InferStream": grpc.stream_stream_rpc_method_handler(
                    servicer.InferStream, request_deserializer=stream_deserialize,
                    response_serializer=pb.InferStreamReply.SerializeToString),
                "Health": handler(servicer.Health, pb.HealthRequest, pb.HealthReply),
                "Load": handler(servicer.Load, pb.LoadRequest, pb.LoadReply),
                "Probe": handler(servicer.Probe, pb.ProbeRequest, pb.ProbeReply),
                "ProbePeer": handler(servicer.ProbePeer, pb.ProbePeerRequest, pb.ProbePeerReply),
                "RunPart": handler(servicer.RunPart, pb.RunPartRequest, pb.RunPartReply)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tiercut.runtime.TierServer", handlers),))
