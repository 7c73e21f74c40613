"""Reading an ONNX file: checked before anything else touches it, so every failure names the
file and what is wrong with it.

Supported: ONNX models of the default domain (``ai.onnx``) at opsets ``MIN_OPSET`` to
``MAX_OPSET`` (7 to 28: ONNX Runtime 1.32 guarantees 7 and up and knows nothing past 28, the
newest that onnx 1.23 defines). Models may keep their weights in external data files next to
the model (``onnx.save(..., save_as_external_data=True)``); the files must be where the model
says. Operators of other domains (``com.microsoft`` and the like) are passed to ONNX Runtime as
they are: they load if this build of ONNX Runtime implements them.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..errors import TiercutError

MIN_OPSET = 7  # the oldest default-domain opset ONNX Runtime guarantees
MAX_OPSET = min(28, onnx.defs.onnx_opset_version())  # the newest ONNX Runtime 1.32 loads
_MAGIC_NOT_ONNX = (b"PK\x03\x04", b"\x89PNG", b"{", b"<", b"%PDF", b"\x80")


class OnnxModelError(TiercutError, ValueError):
    """An ONNX model tiercut cannot use; the message names the file and what is wrong."""


def load_onnx(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """The ONNX model at ``source`` (a path, or a ``ModelProto`` passed in directly), checked.

    Loads external data from the model's folder. Raises OnnxModelError naming the file for: a
    missing or unreadable file, a file that is not ONNX, a truncated or corrupt one, a model
    without a graph or with an opset outside ``MIN_OPSET``..``MAX_OPSET`` of the default domain,
    an external data file that is missing (naming its location), and a model that
    ``onnx.checker`` rejects.
    """
    if isinstance(source, onnx.ModelProto):
        model, where = source, f"ONNX model {source.graph.name or '(unnamed graph)'!r}"
        _check_external(model, None, where)
    else:
        path = Path(source)
        where = f"ONNX file {str(path)!r}"
        model = _read(path, where)
    _check_model(model, where)
    return model


def _read(path: Path, where: str) -> onnx.ModelProto:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OnnxModelError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise OnnxModelError(f"{where} is a directory, not an ONNX file") from None
    except OSError as exc:
        raise OnnxModelError(f"cannot read {where}: {exc.strerror}") from None
    if not data:
        raise OnnxModelError(f"{where} is empty (0 bytes): not an ONNX model")
    if data.startswith(_MAGIC_NOT_ONNX) or _is_text(data[:512]):
        raise OnnxModelError(f"{where} is not an ONNX model (it starts with "
                             f"{data[:16]!r}, which is not an ONNX protobuf)")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OnnxModelError(f"{where} is truncated or corrupt ({len(data)} bytes; protobuf "
                             f"cannot parse it: {exc}); download or export it again") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise OnnxModelError(f"{where} is not an ONNX model (it parses as protobuf but has no "
                             "ir_version or graph)")
    _check_external(model, path.parent, where)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as exc:
        raise OnnxModelError(f"{where}: cannot load its external data: {exc}") from None
    return model


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable() or all(c.isprintable() or c.isspace() for c in text)


def _check_external(model: onnx.ModelProto, folder: Path | None, where: str) -> None:
    """Every tensor stored outside the model names a file that exists (and stays inside)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if folder is None:
            raise OnnxModelError(
                f"{where}: initializer {tensor.name!r} keeps its data in the external file "
                f"{location!r}; load the model from its path (or with onnx.load, which reads "
                "external data) instead of passing a ModelProto without its data")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or folder.resolve() not in (target,
                                                                               *target.parents):
            raise OnnxModelError(f"{where}: initializer {tensor.name!r} names external data "
                                 f"location {location!r}, which is not a file beside the model")
        if not target.is_file():
            raise OnnxModelError(
                f"{where}: the external data file {location!r} (expected at {str(target)!r}) "
                f"is missing; initializer {tensor.name!r} keeps its weights there. Copy it "
                "next to the model")
        need = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if need > target.stat().st_size:
            raise OnnxModelError(f"{where}: the external data file {location!r} is truncated "
                                 f"({target.stat().st_size} bytes, initializer {tensor.name!r} "
                                 f"needs {need})")


def _check_model(model: onnx.ModelProto, where: str) -> None:
    if not model.graph.node:
        raise OnnxModelError(f"{where} has a graph with no nodes; there is nothing to split")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    version = opsets.get("ai.onnx")
    if version is None:
        raise OnnxModelError(f"{where} imports no default-domain (ai.onnx) opset; tiercut "
                             f"supports opsets {MIN_OPSET}..{MAX_OPSET}")
    if not MIN_OPSET <= version <= MAX_OPSET:
        hint = ("convert it with onnx.version_converter.convert_version(model, 17)"
                if version < MIN_OPSET else "export it again at a lower opset")
        raise OnnxModelError(f"{where} uses opset {version} of the default domain, outside the "
                             f"supported range {MIN_OPSET}..{MAX_OPSET} (what ONNX Runtime "
                             f"runs); {hint}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0][:400]
        raise OnnxModelError(f"{where} is not a valid ONNX model: {first}") from None
    except ValueError as exc:  # over 2 GiB in one proto
        raise OnnxModelError(f"{where} cannot be checked: {exc}") from None
