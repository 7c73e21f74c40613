"""What runs a stage on a tier server: the StageRunner interface, the named backends that build
one (``torch``, ``onnxruntime``), and ``register_backend`` to add another."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Protocol

from ..errors import TiercutError
from .stageplan import Layout, StagePlan


class StageRunner(Protocol):
    """split.Stage, or anything with its interface (an ONNX Runtime session, ...)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def run(self, env: Mapping[str, Any]) -> dict[str, Any]: ...


BackendFactory = Callable[[StagePlan, Layout, int], StageRunner]


def _torch_backend(plan: StagePlan, lay: Layout, k: int) -> StageRunner:
    return lay.stages[k]  # for an ONNX file's plan: already an ONNX Runtime stage


def _onnxruntime_backend(plan: StagePlan, lay: Layout, k: int,
                         cache_dir: str | os.PathLike | None = None,
                         threads: int | None = None) -> StageRunner:
    """Stage k as an ONNX Runtime session (tiercut.runtime.onnx_stage; exported once, cached
    on disk). Export covers every stage of the plan the first time, then loads from the cache.
    A plan of an ONNX file needs no export: its stages are cut from the file."""
    from .onnx_model import is_onnx

    if is_onnx(plan.model):
        return lay.stages[k]
    try:
        from .onnx_stage import onnx_stages
    except ImportError as exc:
        raise BackendError(f"backend 'onnxruntime' is not available: {exc}") from None
    from .stageplan import example_inputs

    cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "tiercut", "onnx")
    return onnx_stages(lay.graph, list(lay.stages), cache, plan.model, example_inputs(plan),
                       threads)[k]


BACKENDS: dict[str, BackendFactory] = {"torch": _torch_backend,
                                       "onnxruntime": _onnxruntime_backend}


class BackendError(TiercutError, ValueError):
    """An unknown stage backend, or one that cannot build a stage."""


def register_backend(name: str, factory: BackendFactory) -> None:
    BACKENDS[name] = factory


def build_runner(backend: str, plan: StagePlan, lay: Layout, k: int,
                 cache_dir: str | os.PathLike | None = None,
                 threads: int | None = None) -> StageRunner:
    """Stage k of ``plan`` from ``backend``; onnxruntime also gets its cache folder and threads."""
    if backend == "onnxruntime":
        return _onnxruntime_backend(plan, lay, k, cache_dir, threads)
    return BACKENDS[backend](plan, lay, k)
