"""Profiles for hosts you do not have: scale a measured profile, or regress latency on cost.

Two ways, both Neurosurgeon-style and both marked in ``Profile.predicted``:

* ``scale_profile``: another host is ``speed``× as fast as the measured one, uniformly.
* ``LatencyPredictor``: fitted on profiles measured on one host, it predicts the latency of
  every node of a graph that was never run there, from what the node does (op kind, FLOPs,
  bytes read and written, parameter bytes). Per op kind, latency is a non-negative
  combination of a fixed per-call cost, FLOPs, bytes moved and parameter bytes, fitted by
  non-negative least squares with a relative-error weighting. Kinds seen fewer than
  ``MIN_SAMPLES`` times (or never) use one fit pooled over every node of every kind.

Everything here is pure: no I/O, no torch. A fitted predictor is saved as plain JSON through
``to_dict``/``from_dict``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls

from ..errors import ProfileError
from .profile import Profile

PREDICTOR_FORMAT = "tiercut-predictor/1"
FEATURES = ("call", "flops", "bytes_moved", "param_bytes")  # call = 1: fixed per-call cost
MIN_SAMPLES = 3  # a kind seen fewer times than this uses the pooled fit
# Rows are weighted by 1 / (latency + floor), the floor being the mean node latency of the
# training profiles (so it scales with the host): relative error for nodes slower than the
# mean, so the fit is not decided by the few largest nodes alone; absolute error for faster
# ones, whose relative error is mostly timer noise and matters little to a model's total.
WEIGHT_FLOOR = 1.0  # × mean node latency


def scale_profile(profile: Profile, speed: float, host_name: str) -> Profile:
    """``profile`` as a host ``speed``× as fast would measure it (every latency / ``speed``)."""
    if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not math.isfinite(speed) \
            or speed <= 0:
        raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
    nodes = tuple(dataclasses.replace(n, latency_s=n.latency_s / speed,
                                      latency_spread_s=n.latency_spread_s / speed)
                  for n in profile.nodes)
    predicted: dict[str, Any] = {"method": "speed-factor", "speed": speed,
                                 "from_host": profile.host.get("name")}
    if profile.predicted is not None:  # scaling a prediction: keep how that one was made
        predicted["source_predicted"] = profile.predicted
    return dataclasses.replace(
        profile, nodes=nodes, host={"name": host_name}, predicted=predicted,
        model_latency_s=_div(profile.model_latency_s, speed),
        model_latency_spread_s=_div(profile.model_latency_spread_s, speed),
    )


def _div(value: float | None, speed: float) -> float | None:
    return None if value is None else value / speed


def node_features(profile: Profile) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(op kind, features) per node, features as in ``FEATURES``.

    Bytes moved = bytes read (the producers' outputs, or the whole model input for a node that
    names no input) + bytes written (its own output).
    """
    out_bytes = {n.name: n.output_bytes for n in profile.nodes}
    out_bytes.update({m.name: m.bytes for m in profile.inputs})
    rows = []
    for n in profile.nodes:
        read = sum(out_bytes[s] for s in n.inputs) if n.inputs else profile.input_bytes
        rows.append((n.op, (1.0, float(n.flops), float(read + n.output_bytes), float(n.param_bytes))))
    return rows


@dataclass(frozen=True)
class KindFit:
    """latency_s = coef · features, for one op kind (or the pooled fit)."""

    coef: tuple[float, float, float, float]
    samples: int

    def predict(self, features: Sequence[float]) -> float:
        return max(0.0, math.fsum(c * f for c, f in zip(self.coef, features)))


@dataclass(frozen=True)
class LatencyPredictor:
    host: Mapping[str, Any]  # name, cpu, threads of the host the training profiles came from
    trained_on: tuple[str, ...]  # model names
    kinds: Mapping[str, KindFit]
    pooled: KindFit

    @classmethod
    def fit(cls, profiles: Sequence[Profile]) -> LatencyPredictor:
        profiles = list(profiles)
        if not profiles:
            raise ValueError("LatencyPredictor.fit needs at least one measured profile")
        first = profiles[0]
        for p in profiles:
            if p.predicted is not None:
                raise ProfileError(f"profile of {p.model!r} is itself a prediction "
                                   f"({p.predicted.get('method')}); fit on measured profiles only")
            if _host_key(p) != _host_key(first):
                raise ProfileError(
                    "profiles come from different hosts: "
                    f"{first.model!r} from {_describe_host(first)}, "
                    f"{p.model!r} from {_describe_host(p)}; fit one predictor per host")
            _require_costs(p)
        by_kind: dict[str, tuple[list, list]] = {}
        all_x, all_y = [], []
        for p in profiles:
            for (kind, x), n in zip(node_features(p), p.nodes):
                xs, ys = by_kind.setdefault(kind, ([], []))
                xs.append(x)
                ys.append(n.latency_s)
                all_x.append(x)
                all_y.append(n.latency_s)
        floor = WEIGHT_FLOOR * math.fsum(all_y) / len(all_y)
        kinds = {k: _fit(xs, ys, floor) for k, (xs, ys) in sorted(by_kind.items())
                 if len(ys) >= MIN_SAMPLES}
        host = {k: first.host.get(k) for k in ("name", "cpu", "threads")}
        return cls(host=host, trained_on=tuple(p.model for p in profiles), kinds=kinds,
                   pooled=_fit(all_x, all_y, floor))

    def fit_for(self, kind: str) -> KindFit:
        """The fit used for nodes of ``kind``: its own, or the pooled one for a kind not fitted."""
        return self.kinds.get(kind, self.pooled)

    def predict(self, profile: Profile, host_name: str | None = None) -> Profile:
        """``profile`` (a skeleton from ``Profile.from_graph``, or a profile measured elsewhere)
        with every node's latency predicted for the training host."""
        missing = [n.name for n in profile.nodes if not n.op]
        if missing:
            raise ProfileError(f"profile of {profile.model!r}: node {missing[0]!r} has no 'op' "
                               f"({len(missing)} node(s) lack it); predicting needs the op kind, "
                               "FLOPs and bytes that tracing records")
        latencies = [self.fit_for(kind).predict(x) for kind, x in node_features(profile)]
        nodes = tuple(dataclasses.replace(n, latency_s=t, latency_spread_s=0.0)
                      for n, t in zip(profile.nodes, latencies))
        pooled = sorted({n.op for n in profile.nodes if n.op not in self.kinds})
        name = host_name if host_name is not None else self.host.get("name")
        return dataclasses.replace(
            profile, nodes=nodes,
            host={**self.host, "name": name},
            model_latency_s=None, model_latency_spread_s=None, settings={},
            predicted={"method": "regression", "trained_on": list(self.trained_on),
                       "host": self.host.get("name"), "pooled_kinds": pooled},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PREDICTOR_FORMAT,
            "features": list(FEATURES),
            "host": dict(self.host),
            "trained_on": list(self.trained_on),
            "kinds": {k: _fit_dict(f) for k, f in self.kinds.items()},
            "pooled": _fit_dict(self.pooled),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "predictor") -> LatencyPredictor:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a predictor is a JSON object, got {type(data).__name__}")
        if data.get("format") != PREDICTOR_FORMAT:
            raise ValueError(f"{source}: field 'format' is {data.get('format')!r}; "
                             f"expected {PREDICTOR_FORMAT!r}")
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{source}: features are {data.get('features')!r}; this version of "
                             f"tiercut uses {list(FEATURES)!r}")
        missing = [k for k in ("host", "trained_on", "kinds", "pooled") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(map(repr, missing))}")
        if not isinstance(data["host"], dict) or not isinstance(data["kinds"], dict):
            raise ValueError(f"{source}: 'host' and 'kinds' must be objects")
        return cls(host=dict(data["host"]), trained_on=tuple(data["trained_on"]),
                   kinds={k: _fit_from(v, f"{source}: kind {k!r}") for k, v in data["kinds"].items()},
                   pooled=_fit_from(data["pooled"], f"{source}: 'pooled'"))


def _host_key(p: Profile) -> tuple:
    return (p.host.get("cpu"), p.host.get("threads"))


def _describe_host(p: Profile) -> str:
    h = p.host
    return f"host {h.get('name')!r} (cpu {h.get('cpu')!r}, {h.get('threads')} threads)"


def _require_costs(p: Profile) -> None:
    no_op = [n.name for n in p.nodes if not n.op]
    if no_op:
        raise ProfileError(f"profile of {p.model!r}: node {no_op[0]!r} has no 'op' "
                           f"({len(no_op)} node(s) lack it); fitting needs profiles measured by "
                           "tiercut, with op kinds and FLOPs")
    if not any(n.flops for n in p.nodes):
        raise ProfileError(f"profile of {p.model!r} has no 'flops' on any node; fitting needs "
                           "profiles measured by tiercut, with op kinds and FLOPs")


def _fit(xs: list, ys: list, floor: float) -> KindFit:
    """Non-negative least squares on scaled columns, rows weighted by 1 / (latency + floor)."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    w = 1.0 / (y + max(floor, 1e-12))
    scale = x.max(axis=0)
    scale[scale <= 0] = 1.0
    sol, _ = nnls((x / scale) * w[:, None], y * w)
    coef = sol / scale
    return KindFit(coef=tuple(float(c) for c in coef), samples=len(ys))


def _fit_dict(f: KindFit) -> dict[str, Any]:
    return {"coef": list(f.coef), "samples": f.samples}


def _fit_from(raw: Any, where: str) -> KindFit:
    if not isinstance(raw, dict) or "coef" not in raw:
        raise ValueError(f"{where}: expected an object with 'coef', got {raw!r}")
    coef = raw["coef"]
    if not isinstance(coef, list) or len(coef) != len(FEATURES) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c >= 0
            for c in coef):
        raise ValueError(f"{where}: 'coef' must be {len(FEATURES)} finite numbers >= 0, got {coef!r}")
    return KindFit(coef=tuple(float(c) for c in coef), samples=int(raw.get("samples", 0)))
