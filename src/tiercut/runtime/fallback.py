"""When a request finishes on the device: the status codes that mean "finish elsewhere"
(``FALLBACK_CODES``, raised on as ``Unreachable``) apart from a server's refusal
(``RemoteError``, not a reason to fall back); and running a stage on the device's pool."""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Mapping

import grpc
import torch

from ..errors import TiercutError

FALLBACK_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                  grpc.StatusCode.RESOURCE_EXHAUSTED,  # overloaded: shed, finish elsewhere
                  grpc.StatusCode.CANCELLED)  # a server going away cancelled the call


class RemoteError(TiercutError):
    """A tier server refused a request (bad input, unknown plan, ...); not a reason to fall back."""

    def __init__(self, code: grpc.StatusCode, details: str, endpoint: str):
        super().__init__(f"{endpoint} answered {code.name}: {details}")
        self.code, self.details, self.endpoint = code, details, endpoint


class Unreachable(Exception):
    """No host of a tier answered (with the last one's reason): the request may finish here."""

    def __init__(self, reason: str, endpoint: str):
        super().__init__(reason)
        self.reason, self.endpoint = reason, endpoint
        self.failovers = 0  # hosts given up on before this


def run_stage(stage: Any, env: Mapping[str, Any]) -> dict[str, Any]:
    with torch.inference_mode():
        return stage.run(env)


async def run_local(pool: concurrent.futures.Executor, stage: Any,
                    env: Mapping[str, Any]) -> dict[str, Any]:
    """``stage`` on the device's pool: the device's own stage, or one the fallback runs."""
    if not stage.nodes:  # nothing to compute: not worth a thread hop
        return {}
    return await asyncio.get_running_loop().run_in_executor(pool, run_stage, stage, env)
