"""How a tier server's work says no: ``Abort`` carries a gRPC status code and a message that
names the value, plan or endpoint up to the RPC handler, which answers with it."""
from __future__ import annotations

import grpc

from .. import codecs


class Abort(Exception):
    """Carries a status code and message out to the RPC handler."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def code_number(status: grpc.StatusCode) -> int:
    """The status's number, as an InferStreamReply carries it."""
    return status.value[0]


def check_codec(name: str, label: str) -> None:
    try:
        codecs.parse_codec(name)
    except codecs.CodecError as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{label}: {exc}") from None
