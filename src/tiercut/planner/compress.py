"""The cut and the codec chosen together, under a bound ε on the metric loss (JALAD's question).

The model. A codec table (``tiercut.codecs.calibrate``) measured, at cut positions p, each
codec's size ratio, encode and decode seconds and metric loss; cut p is the placement that runs
the first p compute nodes of the topological order on the device. A calibrated codec c may
carry the device's hop only where its accuracy was measured: the device runs exactly the first
p nodes and loss(p, c) <= ε. Its cost on that hop is the calibrated one, per request:
raw(p)·ratio/bandwidth + encode + decode seconds (stored per raw byte, times raw(p), which is
exactly what crosses under that placement). Every other hop, and every placement without such a
cut, uses the scenario's own codecs (raw unless the scenario says otherwise).

The optimum of that model is

    min( the planner's optimum over every route and placement, with the scenario's codecs,
         min over calibrated p with some admissible codec of
             the planner's optimum over routes with at least one hop, nodes < p pinned to the
             device and nodes >= p kept off it, the device's hop offering the admissible
             codecs at p (the planner takes the fastest on each link) )

and every term is solved exactly (chain DP, min-cut or the integer program), so this is the
exact optimum; tests/test_calibrate.py checks it against brute force over every route,
labelling and codec. With two tiers the pinned problem has a single labelling; with three, the
nodes above the cut are still placed optimally between edge and cloud. For a chain, "the device
runs the first p nodes" is the same as "the calibrated tensor is the one crossing", so there the
rule is per crossing tensor. Ties go to the lossless plan. With a private input, a cut below
the private prefix is not admissible (the prefix stays on the device whatever the codec).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..codecs.calibrate import CodecResult, CodecTable, check_max_loss
from .build import Constraints
from .plan import Plan
from .scenario import Codec, Host, Scenario, ScenarioError
from .solve import InfeasibleError, best_plan, plan


@dataclass(frozen=True)
class JointPlan:
    plan: Plan  # the chosen plan; each Hop.codec names the codec for SplitClient
    lossless: Plan  # the best plan with the scenario's own codecs
    max_loss: float
    metric: str
    position: int | None = None  # the calibrated cut, when a calibrated codec was chosen
    choice: CodecResult | None = None

    @property
    def codecs(self) -> list[str]:
        """One codec name per hop, for ``SplitClient(codec=...)``."""
        return [h.codec for h in self.plan.hops]

    def to_dict(self) -> dict[str, Any]:
        data = self.plan.to_dict()
        data["compression"] = {
            "metric": self.metric, "max_loss": self.max_loss, "position": self.position,
            "codec": self.choice.codec if self.choice else None,
            "calibrated_loss": self.choice.loss if self.choice else 0.0,
            "ratio": self.choice.ratio if self.choice else 1.0,
            "lossless_total_s": self.lossless.total_s,
        }
        return data


def hop_codec(result: CodecResult, raw_bytes: int, encode_scale: float = 1.0,
              decode_scale: float = 1.0) -> Codec:
    """A calibrated result as the planner's per-byte Codec for a cut of ``raw_bytes``, its
    encode and decode seconds times the sending and receiving hosts' ``codec_scale``."""
    per = 1.0 / raw_bytes if raw_bytes else 0.0
    return Codec(result.codec, result.ratio, result.encode_s * per * encode_scale,
                 result.decode_s * per * decode_scale)


def codec_scale(table: CodecTable, host: Host) -> float:
    """How many times slower than the calibrating host ``host`` runs the model (its profile's
    whole-model seconds over the table's): a codec's seconds scale with the host as its nodes'
    do, so a device at a tenth of the speed encodes ten times slower. 1 where the table (made
    before it recorded ``model_s``) or the profile lacks the figure."""
    reference = table.host.get("model_s")
    here = host.profile.model_latency_s or host.profile.total_latency_s
    if not (isinstance(reference, (int, float)) and reference > 0 and here > 0):
        return 1.0
    return here / reference


def plan_with_codecs(scenario: Scenario, table: CodecTable, max_loss: float,
                     objective: str = "latency", constraints: Constraints = Constraints(),
                     method: str = "auto", z: float = 0.0) -> JointPlan:
    """The best plan when the device's hop may use a calibrated codec of loss <= max_loss
    (loss + z standard errors, with ``z`` > 0: a margin for the calibration set's noise)."""
    check_max_loss(max_loss, table.metric)
    profile = scenario.hosts[0].profile
    table.check(profile)
    lossless = plan(scenario, objective, constraints, method)
    best = JointPlan(lossless, lossless, max_loss, table.metric)
    names = [n.name for n in profile.nodes]
    device = scenario.tiers[0]
    scale = {h.name: codec_scale(table, h) for h in scenario.hosts}
    for cut in table.cuts:
        allowed = cut.allowed(max_loss, z)
        if not allowed or cut.position >= len(names):
            continue
        pinned = Constraints(
            pin={**constraints.pin, **{v: device for v in names[:cut.position]}},
            forbid=(*constraints.forbid, *((v, device) for v in names[cut.position:])),
            **{f.name: getattr(constraints, f.name) for f in dataclasses.fields(Constraints)
               if f.name not in ("pin", "forbid")})
        if any(constraints.pin.get(v, device) != device for v in names[:cut.position]):
            continue  # the user pinned a node below the cut elsewhere
        if not set(lossless.private) <= set(names[:cut.position]):
            continue  # a private node above the cut would leave the device
        candidate = best_plan(_offer(scenario, allowed, cut.raw_bytes, scale), objective,
                              pinned, method, min_hops=1)
        if candidate is not None and candidate.value < best.plan.value:
            first = candidate.hops[0].codec
            choice = next(r for r in allowed if r.codec == first)
            best = JointPlan(candidate, lossless, max_loss, table.metric, cut.position, choice)
    return best


def _offer(scenario: Scenario, allowed: tuple[CodecResult, ...], raw_bytes: int,
           scale: dict[str, float]) -> Scenario:
    """``scenario`` with ``allowed`` on every hop leaving a device host (forward only), each
    codec's seconds scaled to that hop's sender (it encodes) and receiver (it decodes)."""
    codecs = dict(scenario.codecs)
    device = scenario.tiers[0]
    for a in scenario.hosts_of(device):
        for b in scenario.hosts:
            if b.tier == device:
                continue
            try:
                codecs[(b.name, a.name)] = (scenario.codec(b, a),)  # the reply keeps its codec
            except ScenarioError:  # no link between them: no route uses this pair
                continue
            codecs[(a.name, b.name)] = tuple(hop_codec(r, raw_bytes, scale[a.name], scale[b.name])
                                             for r in allowed)
    return dataclasses.replace(scenario, codecs=codecs)


__all__ = ["InfeasibleError", "JointPlan", "codec_scale", "hop_codec", "plan_with_codecs"]
