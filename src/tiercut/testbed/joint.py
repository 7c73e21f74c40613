"""The testbed's codec plans: per link setting, the four plans a split has to beat or be.

- "all-device": the whole model on the device; nothing crosses.
- "input to cloud": everything on the cloud, the input sent with the best admissible codec the
  table calibrated at cut 0 (an input codec: jpeg/u8 for images; raw when none is admissible,
  as for token ids). It ignores a private input: it is the baseline privacy rules out.
- "best lossless split": the planner's best plan with the scenario's own (lossless) codecs,
  under the same constraints as the joint plan.
- "joint": the cut and the codec chosen together (``planner.compress.plan_with_codecs``).

A lossless plan's answer must equal the whole model's bit for bit. A lossy one is held to the
codec's calibrated bound instead: for top-1 the answer's top-1 must be the whole model's (one
request cannot show a rate, so it must agree); for cosine, 1 - cos(answer, whole model's) may
not exceed the worst loss the calibration saw on any of its samples. Outside it, BoundError.
The table is passed in, not read here: the testbed sits beside the planner in the layout, and
the command line loads the table (``codecs.calibrate.CodecTable``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import TiercutError
from ..planner import Constraints, baseline
from ..planner.codec_sweep import input_to_top
from ..planner.compress import JointPlan, check_max_loss, plan_with_codecs
from ..planner.plan import Plan
from ..planner.scenario import Scenario

LABELS = ("all-device", "input to cloud", "best lossless split", "joint")


class BoundError(TiercutError, AssertionError):
    """A lossy plan's answer is further from the whole model's than its codec's bound."""


@dataclass(frozen=True)
class Labelled:
    """A plan to measure, with what it sends and the loss its answer may show."""

    plan: Plan
    codecs: tuple[str, ...]  # per hop, for SplitClient(codec=...)
    cut: str  # where the calibrated codec applies: "cut 34 (layers_0_attn_out)", or ""
    calibrated_loss: float  # the table's loss for that codec at that cut (0: lossless)
    ratio: float  # encoded over raw bytes on the first hop (1: raw)
    bound: float | None  # the largest loss one answer may show; None: bit-exact
    private: bool  # honours the private input (trivially, when there is none)


@dataclass(frozen=True)
class JointSetup:
    """What the testbed needs to make the codec plans: a calibrated table, the bound ε on its
    metric's loss, the constraints (a private input among them) and the margin ``z``."""

    table: Any  # codecs.calibrate.CodecTable
    max_loss: float
    constraints: Constraints = Constraints()
    z: float = 0.0

    def __post_init__(self) -> None:
        check_max_loss(self.max_loss, self.table.metric)

    def plans(self, scenario: Scenario) -> dict[str, Labelled]:
        joint = plan_with_codecs(scenario, self.table, self.max_loss, "latency",
                                 self.constraints, z=self.z)  # checks the table against it
        to_cloud = input_to_top(scenario, self.table, self.max_loss, self.z)
        private = self.constraints.private_input is None

        def lossless(p: Plan) -> JointPlan:  # the scenario's own codecs on every hop
            return JointPlan(p, p, self.max_loss, self.table.metric)

        return {"all-device": self._labelled(lossless(baseline(scenario, "device")), True),
                "input to cloud": self._labelled(to_cloud, private),
                "best lossless split": self._labelled(lossless(joint.lossless), True),
                "joint": self._labelled(joint, True)}

    def _labelled(self, jp: JointPlan, private: bool) -> Labelled:
        c = jp.choice
        if c is None:
            return Labelled(jp.plan, tuple(jp.codecs), "", 0.0, 1.0, None, private)
        after = self.table.cut(jp.position).after
        return Labelled(jp.plan, tuple(jp.codecs), f"cut {jp.position} ({after or 'input'})",
                        c.loss, c.ratio, self._bound(c), private)

    def _bound(self, choice: Any) -> float:
        if self.table.metric == "top1":
            return 0.0  # the one answer's top-1 must agree
        return 1.0 - choice.worst if choice.worst is not None else choice.loss

    def checker(self, labelled: dict[str, Labelled], setting: str
                ) -> Callable[[str, torch.Tensor, torch.Tensor], float]:
        """check(label, output, reference) -> the answer's loss; BoundError outside the bound."""
        metric = self.table.metric

        def check(label: str, output: torch.Tensor, reference: torch.Tensor) -> float:
            lab = labelled[label]
            if lab.bound is None:
                if not torch.equal(output, reference):
                    raise BoundError(f"{label} under {setting}: a lossless plan's answer differs "
                                     "from the whole model's")
                return 0.0
            loss = answer_loss(metric, output, reference)
            if loss > lab.bound:
                raise BoundError(
                    f"{label} under {setting}: {lab.codecs[0]} at {lab.cut} gave an answer with "
                    f"{metric} loss {loss:.6f} against the whole model's, over its calibrated "
                    f"bound {lab.bound:.6f} (calibrated mean loss {lab.calibrated_loss:.6f}); "
                    "the calibration does not hold for this request: recalibrate on data like it")
            return loss

        return check


def answer_loss(metric: str, output: torch.Tensor, reference: torch.Tensor) -> float:
    """One answer's loss: top-1, 1 if its top-1 differs from the reference's; cosine, the
    least cosine similarity over the batch, from 1."""
    if metric == "top1":
        return float(not torch.equal(output.argmax(-1), reference.argmax(-1)))
    cos = torch.nn.functional.cosine_similarity(output.flatten(1).double(),
                                                reference.flatten(1).double())
    return max(0.0, 1.0 - float(cos.min()))


def rows(runs: Sequence[Any]) -> list[dict]:
    """One row per measured codec plan: predicted and measured, bytes, codec and losses."""
    out = []
    for r in runs:
        lab: Labelled = r.detail
        hop = r.plan.hops[0] if r.plan.hops else None
        out.append({
            "setting": r.setting, "label": r.label, "placement": r.placement(),
            "predicted_ms": r.predicted_s * 1e3, "measured_ms": r.median_s * 1e3,
            "error": r.error, "requests": len(r.measured_s),
            "first_hop": f"{hop.src}->{hop.dst}" if hop else "",
            "predicted_bytes": round(hop.bytes * lab.ratio) if hop else 0,
            "measured_bytes": r.first_hop_bytes, "codec": lab.codecs[0] if lab.codecs else "",
            "cut": lab.cut, "calibrated_loss": lab.calibrated_loss, "bound": lab.bound,
            "seen_loss": r.seen_loss, "private": lab.private, "speeds": r.speeds,
            "fallbacks": r.fallbacks})
    return out


def plot(joint_rows: Sequence[dict], path: Any, title: str) -> None:
    """The four plans per setting, predicted and measured (the testbed's bar chart)."""
    from . import plot as bars

    per: dict[str, dict] = {}
    for r in joint_rows:
        row = per.setdefault(r["setting"], {"setting": r["setting"]})
        row[f"{r['label']}:pred"], row[f"{r['label']}:meas"] = r["predicted_ms"], r["measured_ms"]
    bars(list(per.values()), path, title, [(k, f"{k}:pred", f"{k}:meas") for k in LABELS])


def verdict(setting_rows: Sequence[dict]) -> str:
    """Whether the joint plan is a split measured faster than the baselines it may be set
    against (input to cloud only where it keeps the input private), and if not, why."""
    by = {r["label"]: r for r in setting_rows}
    joint, dev, cloud = by["joint"], by["all-device"], by["input to cloud"]
    rival = min([dev] + [cloud] * cloud["private"], key=lambda r: r["measured_ms"])
    note = "" if cloud["private"] or cloud["measured_ms"] > min(dev["measured_ms"],
                                                                joint["measured_ms"]) else \
        f"; input to cloud ({cloud['measured_ms']:.0f} ms) is faster but breaks the private input"
    if "device:" in joint["placement"] and joint["placement"] != dev["placement"]:
        if joint["measured_ms"] < rival["measured_ms"]:
            return (f"the split wins: joint {joint['measured_ms']:.0f} ms against {rival['label']} "
                    f"{rival['measured_ms']:.0f} ms ({rival['measured_ms'] / joint['measured_ms']:.1f}x"
                    f"), prediction {joint['error']:+.0%} off{note}")
        return (f"no split wins as measured: the joint split ({joint['measured_ms']:.0f} ms) lost "
                f"to {rival['label']} ({rival['measured_ms']:.0f} ms){note}")
    if "device:" not in joint["placement"]:
        return (f"no split wins: the input ({cloud['measured_bytes']} B on the first hop) is smaller "
                f"than what any cut sends, so shipping it beats computing a prefix on the device")
    if cloud["predicted_ms"] >= dev["predicted_ms"]:
        return (f"no split wins: the device computes the whole model in {dev['predicted_ms']:.1f} "
                f"ms (predicted), less than any plan that crosses a link (input to cloud, the "
                f"least that crosses, is predicted {cloud['predicted_ms']:.1f} ms)")
    return (f"no split wins: the input must stay on the device, and every admissible cut "
            f"sends too much for this link to beat the device's {dev['predicted_ms']:.0f} ms "
            f"(predicted){note}")
