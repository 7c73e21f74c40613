"""The ONNX Runtime stage backend: each Stage exported to ONNX once, cached on disk, run by ORT.

``onnx_stages(graph, stages, cache_dir, key, example_inputs)`` turns the torch Stages of
``split`` into OnnxStages with the same interface (``index``, ``inputs``, ``outputs``,
``run(env) -> {name: tensor}``).

Choices, and why:
- Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export underneath). It exports every
  zoo model, at any cut tried, within 1e-5 relative of torch; it is the maintained path (the
  TorchScript exporter, ``dynamo=False``, warns that it is deprecated) and writes leaner graphs
  (LayerNormalization fused, no Shape/Slice chains for sizes). The TorchScript exporter also
  works here and exports ~10x faster; ``exporter="torchscript"`` selects it.
- Shapes are fixed: a stage runs only at the shapes (batch included) of the example it was
  exported with; other shapes raise BackendError. The cache key includes those shapes.
- Cache: one ``.onnx`` per stage, named by a hash of the model key, the stage index, its node
  list, inputs and outputs (what fixes its module: plans that share a stage share its file),
  its input shapes/dtypes, the exporter and the torch, onnx and onnxscript versions; the file
  carries that hash in its metadata. A file is trusted only if it loads, passes
  ``onnx.checker``, carries the hash, has the stage's inputs/outputs and matches the torch stage
  on the example within ``rtol``; otherwise it is rebuilt (a fresh export that fails these is
  removed and raises BackendError). ``key`` must change when the weights change (the example
  check catches most stale weights, not all). Files are written to a temporary name in the
  cache folder and moved into place with ``os.replace``. One file holds the whole stage
  (no external data), so a stage must stay under protobuf's 2 GiB.
- Values that ONNX cannot carry (Python ints and sizes, tuples) crossing into or out of a stage,
  and export failures, raise BackendError naming the stage and value or op: run such a stage
  with the torch backend. A stage with no nodes has no inputs and no outputs: it is a
  pass-through OnnxStage with no session, whose ``run`` returns ``{}``.
- Files are loaded from disk by path (ONNX protobuf, never pickles).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import AssignmentError, TiercutError
from ..graph.dag import Graph
from ..graph.split import Stage

FORMAT = "tiercut-onnx-stage/1"  # bump when what goes into a file changes
EXPORTERS = ("dynamo", "torchscript")
_OPSET = {"dynamo": 18, "torchscript": 17}
_KEY_PROP = "tiercut.cache_key"
_log = logging.getLogger(__name__)


class BackendError(TiercutError):
    """A stage that this backend cannot export or run; the message names the stage and why."""


class OnnxStage:
    """One stage run by an ``onnxruntime.InferenceSession`` (CPU). No session: no nodes."""

    def __init__(self, index: int, inputs: Sequence[str], outputs: Sequence[str],
                 session: Any = None, path: Path | None = None) -> None:
        self.index = index
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.session = session
        self.path = path
        self._expect: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        if session is not None:
            self._expect = {i.name: (tuple(i.shape), _ORT_TYPES.get(i.type))
                            for i in session.get_inputs()}
            given = [o.name for o in session.get_outputs()]
            extra = sorted(set(self._expect) - set(self.inputs))
            if extra or given != list(self.outputs):
                raise BackendError(
                    f"stage {index}: ONNX file {path} reads {sorted(self._expect)} and writes "
                    f"{given}, but the stage reads {list(self.inputs)} and writes "
                    f"{list(self.outputs)}")

    @classmethod
    def load(cls, path: str | os.PathLike, stage: Stage,
             threads: int | None = None) -> "OnnxStage":
        """A session on the ONNX file at ``path`` for ``stage`` (threads=None: ORT's default)."""
        from ..onnxgraph.split import session as ort_session

        try:  # (pool threads spin, as this backend's sessions always have)
            session = ort_session(str(path), threads, spin=True)
        except Exception as exc:
            raise BackendError(
                f"stage {stage.index}: onnxruntime cannot load {path}: {exc}") from exc
        return cls(stage.index, stage.inputs, stage.outputs, session, Path(path))

    def run(self, env: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Run on the values in ``env``; return this stage's outputs by name, as torch tensors."""
        missing = [name for name in self.inputs if name not in env]
        if missing:
            raise AssignmentError(f"stage {self.index} is missing its inputs {missing}")
        if self.session is None:
            return {}
        feed = {name: self._to_numpy(name, env[name]) for name in self._expect}
        try:
            results = self.session.run(list(self.outputs), feed)
        except Exception as exc:
            raise BackendError(
                f"stage {self.index} failed in onnxruntime ({self.path}): {exc}") from exc
        return {name: torch.from_numpy(r) for name, r in zip(self.outputs, results)}

    def _to_numpy(self, name: str, value: Any) -> np.ndarray:
        if not isinstance(value, torch.Tensor):
            raise BackendError(f"stage {self.index}: input {name!r} is a {type(value).__name__}, "
                               "not a tensor; run this stage with the torch backend")
        shape, dtype = self._expect[name]
        array = value.detach().cpu().contiguous().numpy()  # a view unless it had to move
        fits = len(array.shape) == len(shape) and all(
            not isinstance(d, int) or d == a for d, a in zip(shape, array.shape))
        if not fits or (dtype is not None and array.dtype != dtype):
            raise BackendError(
                f"stage {self.index}: input {name!r} is {tuple(array.shape)} {array.dtype}, but "
                f"the stage was exported for {shape} {dtype} (ONNX stages have fixed shapes, batch "
                "included); export it again with an example of this shape")
        return array

    def __repr__(self) -> str:
        return (f"OnnxStage({self.index}, inputs={self.inputs}, outputs={self.outputs}, "
                f"path={self.path})")


_ORT_TYPES = {f"tensor({k})": np.dtype(v) for k, v in {
    "float": "float32", "double": "float64", "float16": "float16", "int64": "int64",
    "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool"}.items()}


def export_stage(stage: Stage, example_env: Mapping[str, Any], path: str | os.PathLike, *,
                 exporter: str = "dynamo", metadata: Mapping[str, str] | None = None) -> Path:
    """Export ``stage.module`` to ONNX at ``path`` (written atomically), at the example's shapes.

    ``example_env`` holds a value for each of the stage's inputs. ``metadata`` goes into the
    model's metadata_props. Raises BackendError for non-tensor inputs and export failures.
    """
    if exporter not in EXPORTERS:
        raise BackendError(f"unknown exporter {exporter!r}; choose one of {EXPORTERS}")
    if not stage.nodes:
        raise BackendError(f"stage {stage.index} has no nodes: there is nothing to export "
                           "(onnx_stages makes it a pass-through)")
    missing = [name for name in stage.inputs if name not in example_env]
    if missing:
        raise AssignmentError(f"stage {stage.index} is missing example values for {missing}")
    args = tuple(example_env[name] for name in stage.inputs)
    _require_tensors(stage, zip(stage.inputs, args), "input")
    try:
        with _quiet(), torch.no_grad():
            proto = _export(stage, args, exporter)
    except Exception as exc:
        raise BackendError(
            f"stage {stage.index} cannot be exported to ONNX by the {exporter} exporter: "
            f"{_summary(exc)}; the torch backend can run this stage") from exc
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    path = Path(path)
    _write_atomic(path, proto.SerializeToString())
    return path


def onnx_stages(graph: Graph, stages: Sequence[Stage], cache_dir: str | os.PathLike, key: str,
                example_inputs: Any, threads: int | None = None, *, exporter: str = "dynamo",
                rtol: float = 1e-4) -> list[OnnxStage]:
    """OnnxStages for ``stages``, exporting each one not already in ``cache_dir``.

    ``key`` names the model and its weights (change it when they change). The example inputs of
    each stage come from running the torch stages in order on ``example_inputs``; each ONNX stage
    must match its torch stage there: max|onnx - torch| <= rtol * max(1, max|torch|).
    """
    args = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if len(args) != len(graph.inputs):
        raise BackendError(f"{graph.name} takes inputs {list(graph.inputs)}, "
                           f"got {len(args)} examples")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    env: dict[str, Any] = dict(zip(graph.inputs, args))
    result = []
    for stage in stages:
        with torch.no_grad():
            expected = stage.run(env)
        if not stage.nodes:
            result.append(OnnxStage(stage.index, stage.inputs, stage.outputs))
            continue
        _require_tensors(stage, ((n, env[n]) for n in stage.inputs), "input")
        _require_tensors(stage, expected.items(), "output")
        digest = cache_key(key, stage, env, exporter)
        path = cache / f"{_safe(key)}-stage{stage.index}-{digest[:16]}.onnx"
        onnx_stage = _load_valid(path, digest, stage, env, expected, threads, rtol)
        if onnx_stage is None:
            export_stage(stage, env, path, exporter=exporter, metadata={_KEY_PROP: digest})
            onnx_stage = _load_valid(path, digest, stage, env, expected, threads, rtol, fresh=True)
        result.append(onnx_stage)
        env.update(expected)
    return result


def cache_key(key: str, stage: Stage, env: Mapping[str, Any], exporter: str) -> str:
    """The sha256 that names a stage's ONNX file.

    A stage's module is fixed by the model and its node list, inputs and outputs: two plans that
    share a stage (the same nodes on the same tier) share its file.
    """
    fields = {
        "format": FORMAT, "key": key, "stage": stage.index, "nodes": list(stage.nodes),
        "inputs": [[n, list(env[n].shape), str(env[n].dtype)] for n in stage.inputs],
        "outputs": list(stage.outputs), "exporter": exporter, "opset": _OPSET[exporter],
        "torch": torch.__version__, "onnx": _version("onnx"), "onnxscript": _version("onnxscript"),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _load_valid(path: Path, digest: str, stage: Stage, env: Mapping[str, Any],
                expected: Mapping[str, Any], threads: int | None, rtol: float,
                fresh: bool = False) -> OnnxStage | None:
    """The OnnxStage at ``path`` if the file is whole, ours and right; None to rebuild it.

    A freshly exported file that fails raises BackendError instead.
    """
    if not path.exists() and not fresh:
        return None
    try:
        _check_file(path, digest)
        onnx_stage = OnnxStage.load(path, stage, threads)
        got = onnx_stage.run(env)
        for name, ref in expected.items():
            _check_close(name, got[name], ref, rtol)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not trust this file
        if fresh:
            path.unlink(missing_ok=True)  # do not leave a wrong file for the next caller
            if isinstance(exc, BackendError):
                raise BackendError(f"stage {stage.index}: the exported ONNX is wrong: {exc}; "
                                   "the torch backend can run this stage") from exc
            raise BackendError(f"stage {stage.index}: the exported ONNX file {path} is unusable: "
                               f"{exc}; the torch backend can run this stage") from exc
        _log.warning("rebuilding cached ONNX stage %s: %s", path, _summary(exc))
        return None
    return onnx_stage


def _check_file(path: Path, digest: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(_KEY_PROP) != digest:
        raise BackendError(f"{path} carries cache key {props.get(_KEY_PROP)!r}, not {digest!r}")


def _check_close(name: str, got: torch.Tensor, ref: torch.Tensor, rtol: float) -> None:
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise BackendError(f"output {name!r} is {tuple(got.shape)} {got.dtype}, torch gives "
                           f"{tuple(ref.shape)} {ref.dtype}")
    if not ref.is_floating_point():
        if not torch.equal(got, ref):
            raise BackendError(f"output {name!r} differs from torch")
        return
    if ref.numel() == 0:
        return
    err = (got.double() - ref.double()).abs().max().item()
    bound = rtol * max(1.0, ref.double().abs().max().item())
    if not err <= bound:  # also catches NaN
        raise BackendError(f"output {name!r} differs from torch by {err:.3g} > {bound:.3g}")


def _require_tensors(stage: Stage, values: Any, kind: str) -> None:
    for name, value in values:
        if not isinstance(value, torch.Tensor):
            raise BackendError(
                f"stage {stage.index}: {kind} {name!r} is a {type(value).__name__} "
                f"({value!r:.80}), not a tensor, and ONNX stages pass only tensors; run this "
                "stage with the torch backend, or move the cut so that only tensors cross it")


def _export(stage: Stage, args: tuple, exporter: str) -> Any:
    import onnx

    names = {"input_names": list(stage.inputs), "output_names": list(stage.outputs),
             "opset_version": _OPSET[exporter]}
    if exporter == "dynamo":
        program = torch.onnx.export(stage.module, args, None, dynamo=True, external_data=False,
                                    optimize=True, verbose=False, report=False, **names)
        return program.model_proto
    buffer = io.BytesIO()
    torch.onnx.export(stage.module, args, buffer, dynamo=False, do_constant_folding=True, **names)
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters log, warn and print at length; our errors say what matters."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _summary(exc: BaseException) -> str:
    """The part of an exporter's long message that names the op."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].split("(Refer to", 1)[0]
        parts = [f"op {m.group(2)} (node {m.group(1)})" for m in re.finditer(
            r"Error when translating node %(\S+) : .*?\[target=([^\]]+)\]", text)]
        parts += re.findall(r"No ONNX function found for <[^>]*>", text)
        if parts:
            return "; ".join(dict.fromkeys(parts))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:3])[:600]}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the cache from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)  # without importing it (onnxscript is slow)
    except importlib.metadata.PackageNotFoundError:
        return None


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:64] or "model"
