"""Calibration: what each codec costs, saves and breaks at each candidate cut, measured on
real activations and held-out data. The result is a codec table (``tiercut-codecs/1``) the
planner reads to choose the cut and the codec together (``planner/compress.py``).

A cut at position p (0 <= p < number of compute nodes) is the two-tier placement that runs the
first p nodes of the graph's topological order below the cut and the rest above it; the
tensors crossing it are those produced below (model inputs included) and read above, as in
the planner. For a chain that is one tensor per position. For each cut and codec the table
records, per request (batch 1, as the runtime sends it): the encoded size over the raw size,
the encode and decode seconds, and the metric on held-out data when every crossing tensor of
every sample is encoded and decoded: top-1 accuracy for classifiers (loss = the uncompressed
model's top-1 minus this), or the cosine similarity of each output to the uncompressed model's
output for encoders (loss = 1 - mean cosine). Feature statistics per cut: per-channel value
range, sparsity, and entropy-coded sizes.

A table carries the model name and a digest of the graph's signature (the one profiles carry):
``CodecTable.check(profile)`` refuses a table measured on another model or graph.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import zstandard

from ..errors import TiercutError
from ..graph.dag import Graph
from ..graph.split import split
from ..measure.profile import Profile
from .codec import decode, encode
from .spec import CodecError, CodecSpec, parse_codec

FORMAT = "tiercut-codecs/1"
METRICS = ("top1", "cosine")
DEFAULT_CODECS = ("fp16", "q8", "q6", "q4", "q2", "q8+lz4", "q4+lz4", "q2+lz4")


class CalibrationError(TiercutError, ValueError):
    """A calibration request, dataset or codec table that cannot be used; the message says why."""


@dataclass(frozen=True)
class CodecResult:
    codec: str
    ratio: float  # encoded bytes / raw bytes of the crossing tensors, per request
    encode_s: float  # per request (batch 1), every crossing tensor
    decode_s: float
    loss: float  # metric loss on held-out data (0 = unchanged)
    metric: float  # the metric's value with this codec (top-1, or mean cosine)
    worst: float | None = None  # cosine only: the lowest cosine over the samples
    stderr: float = 0.0  # standard error of ``loss`` (per-sample differences, paired)


@dataclass(frozen=True)
class Cut:
    position: int  # compute nodes below the cut, in topological order
    after: str  # the last node below the cut ("" at position 0: the model input crosses)
    tensors: tuple[str, ...]  # what crosses, in graph order
    raw_bytes: int  # per request
    codecs: tuple[CodecResult, ...]
    stats: dict[str, Any] = field(default_factory=dict)  # tensor -> feature statistics
    refused: dict[str, str] = field(default_factory=dict)  # codec -> why it cannot encode here

    def result(self, codec: str) -> CodecResult:
        for r in self.codecs:
            if r.codec == codec:
                return r
        raise CalibrationError(f"cut {self.position} ({self.after or 'input'}) has no codec "
                               f"{codec!r}; calibrated: {[r.codec for r in self.codecs]}")

    def allowed(self, max_loss: float, z: float = 0.0) -> tuple[CodecResult, ...]:
        """Codecs whose loss (plus ``z`` standard errors: 1.645 for a one-sided 95 % bound)
        is at most ``max_loss``."""
        return tuple(r for r in self.codecs if r.loss + z * r.stderr <= max_loss)


@dataclass(frozen=True)
class CodecTable:
    model: str
    signature: str  # digest of the graph's signature (see graph_signature)
    metric: str
    baseline: float  # the uncompressed model's metric on the held-out data
    samples: int
    cuts: tuple[Cut, ...]
    host: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {"format": FORMAT, **asdict(self)}
        return json.loads(json.dumps(data))  # tuples -> lists

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CodecTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"cannot read codec table {path}: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "codec table") -> CodecTable:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CalibrationError(f"{source}: format is {got!r}; expected {FORMAT!r} "
                                   "(write one with `tiercut calibrate`)")
        try:
            cuts = tuple(Cut(c["position"], c["after"], tuple(c["tensors"]), c["raw_bytes"],
                             tuple(CodecResult(**r) for r in c["codecs"]), c.get("stats", {}),
                             c.get("refused", {}))
                         for c in data["cuts"])
            table = cls(data["model"], data["signature"], data["metric"], data["baseline"],
                        data["samples"], cuts, data.get("host", {}))
        except (KeyError, TypeError) as exc:
            raise CalibrationError(f"{source}: malformed {FORMAT} table ({exc!r})") from None
        if table.metric not in METRICS:
            raise CalibrationError(f"{source}: metric {table.metric!r} is not one of {METRICS}")
        return table

    def check(self, profile: Profile | Graph, model: str | None = None) -> None:
        """Raise CalibrationError unless this table was measured on ``profile``'s graph."""
        name = model or (profile.model if isinstance(profile, Profile) else profile.name)
        sig = graph_signature(profile)
        if name != self.model or sig != self.signature:
            raise CalibrationError(
                f"codec table is for model {self.model!r} (graph signature {self.signature}) "
                f"but the plan is for {name!r} (graph signature {sig}); calibrate this model "
                f"with `tiercut calibrate --model {name}`")

    def cut(self, position: int) -> Cut:
        for c in self.cuts:
            if c.position == position:
                return c
        raise CalibrationError(f"no cut at position {position}; calibrated positions: "
                               f"{[c.position for c in self.cuts]}")


def graph_signature(source: Profile | Graph) -> str:
    """A short digest of what two profiles of the same graph share (Profile.signature)."""
    profile = source if isinstance(source, Profile) else Profile.from_graph(source, host={})
    text = json.dumps(profile.signature(), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def check_max_loss(max_loss: float, metric: str) -> None:
    """ε must be a fraction: [0, 1] of top-1, [0, 2] of cosine (1 - cos lies there)."""
    high = 1.0 if metric == "top1" else 2.0
    if not (isinstance(max_loss, (int, float)) and math.isfinite(max_loss)
            and 0.0 <= max_loss <= high):
        hint = ("a fraction of top-1: 0.01 allows one point of accuracy lost" if metric == "top1"
                else "1 - cosine: 0.01 asks for cosine >= 0.99")
        raise CalibrationError(f"max loss {max_loss!r} is outside [0, {high:g}] for metric "
                               f"{metric} ({hint})")


# ---- cuts --------------------------------------------------------------------------------
def cut_positions(graph: Graph, cuts: str | int) -> list[int]:
    """``"all"``: every position 0..n-1; N: N positions spread evenly over them."""
    n = len(graph.compute_nodes)
    if cuts == "all":
        return list(range(n))
    if isinstance(cuts, bool) or not isinstance(cuts, int) or cuts < 1:
        raise CalibrationError(f"cuts must be 'all' or an integer >= 1, got {cuts!r}")
    if cuts >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, cuts)})


def crossing_at(graph: Graph, position: int) -> tuple[str, ...]:
    """Tensors produced below the cut (model inputs included) and read above it."""
    compute = [n.name for n in graph.compute_nodes]
    below = set(graph.inputs) | set(compute[:position])
    users = graph.consumers()
    return tuple(n.name for n in graph if n.name in below
                 and any(u not in below for u in users[n.name]))


def _finish(graph: Graph, env: dict[str, Any]) -> Any:
    import torch.fx as fx

    out_node = next(n for n in graph.module.graph.nodes if n.op == "output")
    return fx.node.map_arg(out_node.args[0], lambda n: env[n.name])


def _flat(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise CalibrationError(f"the model's output is a {type(out).__name__}; calibration "
                           "compares a tensor (the first one of a tuple)")


# ---- metrics -----------------------------------------------------------------------------
def _per_sample(metric: str, out: torch.Tensor, ref: torch.Tensor,
                labels: torch.Tensor | None) -> torch.Tensor:
    """Each sample's score: 1/0 for a correct/wrong top-1, or its output's cosine to ref."""
    if metric == "top1":
        return (out.argmax(dim=1) == labels).double()
    return torch.nn.functional.cosine_similarity(out.reshape(len(out), -1).double(),
                                                 ref.reshape(len(ref), -1).double(), dim=1)


def _score(metric: str, out: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor | None
           ) -> tuple[float, float | None]:
    per = _per_sample(metric, out, ref, labels)
    return float(per.mean()), (float(per.min()) if metric == "cosine" else None)


# ---- calibration -------------------------------------------------------------------------
def calibrate(graph: Graph, inputs: Sequence[torch.Tensor], labels: torch.Tensor | None,
              metric: str, codecs: Sequence[str] = DEFAULT_CODECS, cuts: str | int = "all",
              model: str | None = None, log=lambda msg: None,
              positions: Sequence[int] | None = None) -> CodecTable:
    """Measure every (cut, codec) pair on held-out ``inputs`` (batch first) for ``graph``
    (traced at batch 1 so its signature matches the profiles'). ``positions`` overrides
    ``cuts`` with explicit cut positions. A codec that cannot encode a cut's tensors (fp16 on
    values beyond its range, say) is left out of that cut and named in ``Cut.refused``."""
    if metric not in METRICS:
        raise CalibrationError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if metric == "top1" and labels is None:
        raise CalibrationError("metric top1 needs labels; the dataset has none (use cosine)")
    specs = [parse_codec(c) for c in dict.fromkeys(codecs)]
    inputs = tuple(inputs)
    n = len(inputs[0])
    if labels is not None and len(labels) != n:
        raise CalibrationError(f"{len(labels)} labels for {n} samples")
    with torch.inference_mode():
        ref = _flat(_finish(graph, _run_all(graph, inputs)))
    baseline = _score(metric, ref, ref, labels)[0]
    compute = [c.name for c in graph.compute_nodes]
    table_cuts = []
    n_compute = len(graph.compute_nodes)
    if positions is not None and any(not 0 <= p < n_compute for p in positions):
        raise CalibrationError(f"cut positions {list(positions)}: accepted 0..{n_compute - 1}")
    for p in (sorted(set(positions)) if positions is not None else cut_positions(graph, cuts)):
        assignment = {name: 0 if i < p else 1 for i, name in enumerate(compute)}
        stages = split(graph, assignment)
        with torch.inference_mode():
            env = dict(zip(graph.inputs, inputs))
            env.update(stages[0].run(env))
        tensors = crossing_at(graph, p)
        raw = sum(graph[t].output_bytes for t in tensors)
        results, refused = [], {}
        for spec in specs:
            try:
                results.append(_measure(spec, graph, stages[1], env, tensors, metric, ref,
                                        labels, baseline))
            except CodecError as exc:
                refused[spec.name] = str(exc)
        stats = {t: feature_stats(env[t]) for t in tensors if isinstance(env[t], torch.Tensor)}
        table_cuts.append(Cut(p, compute[p - 1] if p else "", tensors, raw, tuple(results), stats,
                              refused))
        log(f"cut {p} ({compute[p - 1] if p else 'input'}): " + ", ".join(
            f"{r.codec} x{1 / r.ratio:.1f} loss {r.loss:.4f}" for r in results))
    import platform

    # model_s: this host's whole-model seconds at batch 1, so that a planner can scale the
    # codecs' seconds to a host that runs the model slower or faster (compress.codec_scale)
    host = {"machine": platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "model_s": _model_seconds(graph, tuple(x[:1] for x in inputs))}
    return CodecTable(model or graph.name, graph_signature(graph), metric, baseline, n,
                      tuple(table_cuts), host)


def _model_seconds(graph: Graph, inputs: tuple[torch.Tensor, ...], repeat: int = 5) -> float:
    """Median seconds of the whole model (the traced module, nothing built inside the clock) on
    ``inputs`` here, after one warm-up run."""
    times = []
    with torch.inference_mode():
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            graph.module(*inputs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _run_all(graph: Graph, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    stages = split(graph, {c.name: 0 for c in graph.compute_nodes})
    env = dict(zip(graph.inputs, inputs))
    env.update(stages[0].run(env))
    return env


def _measure(spec: CodecSpec, graph: Graph, upper: Any, env: dict[str, Any],
             tensors: tuple[str, ...], metric: str, ref: torch.Tensor,
             labels: torch.Tensor | None, baseline: float) -> CodecResult:
    """Encode and decode every crossing tensor sample by sample (batch 1, as sent), then run
    the part above the cut on the decoded batch."""
    n = len(ref)
    raw_bytes = enc_bytes = 0
    enc_s = dec_s = 0.0
    decoded: dict[str, Any] = {}
    exact = True
    for name in tensors:
        value = env[name]
        if not isinstance(value, torch.Tensor):  # a Python number: sent as is
            decoded[name] = value
            continue
        parts = [value[i:i + 1] for i in range(n)] if value.ndim and len(value) == n else [value]
        out = []
        for part in parts:
            t0 = time.perf_counter()
            frame = encode(part, spec)
            t1 = time.perf_counter()
            back = decode(frame)
            t2 = time.perf_counter()
            enc_s, dec_s = enc_s + t1 - t0, dec_s + t2 - t1
            raw_bytes += part.numel() * part.element_size()
            enc_bytes += len(frame)
            out.append(back)
        decoded[name] = torch.cat(out) if len(out) > 1 else out[0]
        exact = exact and torch.equal(decoded[name], value)
    ratio = enc_bytes / raw_bytes if raw_bytes else 1.0
    per = n if any(isinstance(env[t], torch.Tensor) and env[t].ndim and len(env[t]) == n
                   for t in tensors) else 1
    if exact:  # bit-identical inputs above the cut: the metric cannot change
        return CodecResult(spec.name, ratio, enc_s / per, dec_s / per, 0.0, baseline,
                           1.0 if metric == "cosine" else None)
    with torch.inference_mode():
        full = {**env, **decoded}
        full.update(upper.run(full))
        out = _flat(_finish(graph, full))
    value, worst = _score(metric, out, ref, labels)
    diff = _per_sample(metric, ref, ref, labels) - _per_sample(metric, out, ref, labels)
    stderr = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return CodecResult(spec.name, ratio, enc_s / per, dec_s / per, baseline - value, value,
                       worst, stderr)


def feature_stats(x: torch.Tensor) -> dict[str, Any]:
    """Per-channel value range (dim 1 of 4-D tensors, the last dim otherwise), sparsity, and
    entropy-coded sizes per sample: fp32+zstd, q8+zstd, and the entropy of the q8 codes."""
    stats: dict[str, Any] = {"shape": list(x.shape[1:]), "dtype": str(x.dtype).removeprefix("torch.")}
    if not x.is_floating_point() or x.numel() == 0:
        return stats
    xf = x.detach().float()
    dim = 1 if xf.ndim == 4 else xf.ndim - 1
    per_channel = xf.transpose(0, dim).reshape(xf.shape[dim], -1) if xf.ndim > 1 else xf[None]
    lo, hi = per_channel.amin(dim=1), per_channel.amax(dim=1)
    n = len(xf) if xf.ndim > 1 else 1
    samples = [xf[i:i + 1] for i in range(n)] if xf.ndim > 1 else [xf]
    zraw = sum(len(zstandard.ZstdCompressor(level=1).compress(s.numpy().tobytes()))
               for s in samples) / len(samples)
    zq8 = sum(len(encode(s, "q8+zstd")) for s in samples) / len(samples)
    g_lo, g_hi = float(xf.min()), float(xf.max())
    codes = torch.round((xf - g_lo) / ((g_hi - g_lo) / 255 if g_hi > g_lo else 1.0))
    counts = torch.bincount(codes.reshape(-1).to(torch.int64).clamp(0, 255), minlength=256)
    prob = counts[counts > 0].double() / counts.sum()
    stats.update({
        "channel_dim": dim, "channel_min": [round(float(v), 6) for v in lo],
        "channel_max": [round(float(v), 6) for v in hi],
        "sparsity": float((xf == 0).double().mean()),
        "raw_bytes": xf[0:1].numel() * 4 if xf.ndim > 1 else xf.numel() * 4,
        "zstd_bytes": zraw, "q8_zstd_bytes": zq8,
        "q8_entropy_bits": float(-(prob * prob.log2()).sum()),
    })
    return stats
