"""A testbed on one machine: plan, then run the plan for real and compare.

This machine plays every tier. The edge and cloud are tier servers in their own processes on
loopback; the device is this process. Every hop goes through an emulated link (the userspace
shaping proxy: token bucket and one-way delay each way, in one child process). Where the
machine allows it (root and cgroups), slower hosts are real CPU caps (``cpucap``): the device
process and the edge server run at a fraction of one CPU. Elsewhere every tier runs at full
speed and the report says so. Each tier's speed is then measured where it runs (the device's
whole model in this process under its cap, each server's compute time for an all-on-that-tier
plan, as its replies report it), and the planner sees the profile measured here scaled by
those measured speed factors.

For each link setting the planner's choice and the all-device and all-cloud baselines are run
one request of each in turn, ``requests`` rounds (or until ``budget_s`` per plan is spent, at
least ``min_requests``), and each plan's median measured latency is set against its prediction.
With a codec table (``joint.JointSetup``) the plans are the four of ``joint``: all-device, the
input to the cloud with its best input codec, the best lossless split and the joint cut+codec
plan, each sent with its per-hop codecs and each lossy answer held to its calibrated bound.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from ..measure import cpucap
from ..link.child import ProxySpec, proxies_in_child
from ..planner import Host, Link, Scenario, baseline, plan
from ..planner.plan import Plan
from ..measure.predict import scale_profile
from ..measure.profile import Profile
from ..measure.profiler import ProfileSettings, profile_model
from ..zoo import entry

TIERS = ("device", "edge", "cloud")
CAPS = {"device": 0.1, "edge": 0.5, "cloud": 1.0}  # fractions of one CPU of this machine
EDGE_CLOUD = Link(500e6, 0.005)  # the wired hop between edge and cloud
CLOUD_EXTRA_S = 0.005  # the device's direct path to the cloud is this much longer
# told of each measured request: (setting, label, plan, the runtime's Measurement)
OnRequest = Callable[[str, str, Plan, Any], None]


@dataclass(frozen=True)
class Setting:
    """The device's access link: rate and one-way delay (to the edge; the cloud is
    CLOUD_EXTRA_S further)."""

    name: str
    rate_bps: float
    delay_s: float


SETTINGS = (Setting("3G-like", 1e6, 0.020), Setting("LTE-like", 10e6, 0.020),
            Setting("Wi-Fi-like", 100e6, 0.020))


class Measured:
    """A plan (``plan``) and the seconds its requests measured (``measured_s``)."""

    plan: Plan
    measured_s: list[float]

    @property
    def predicted_s(self) -> float:
        return self.plan.total_s

    @property
    def median_s(self) -> float:
        return statistics.median(self.measured_s)

    @property
    def error(self) -> float:
        """(measured - predicted) / predicted, of the median."""
        return self.median_s / self.predicted_s - 1.0


@dataclass
class Run(Measured):
    """One plan measured under one setting."""

    setting: str
    label: str  # "chosen", "all-device", "all-cloud"; with a codec table, ``joint.LABELS``
    plan: Plan
    speeds: dict[str, float]  # each tier's speed factor the plan was made with
    measured_s: list[float] = field(default_factory=list)
    fallbacks: int = 0
    detail: Any = None  # a codec plan's ``joint.Labelled`` (codecs, calibrated loss, bound)
    seen_loss: float = 0.0  # the largest loss against the whole model's answer, at run time
    first_hop_bytes: int = 0  # bytes the device sent on the first hop, last request

    def placement(self) -> str:
        return self.plan.placement()


def links_for(setting: Setting) -> dict[tuple[str, str], Link]:
    return {("device", "edge"): Link(setting.rate_bps, setting.delay_s),
            ("device", "cloud"): Link(setting.rate_bps, setting.delay_s + CLOUD_EXTRA_S),
            ("edge", "cloud"): EDGE_CLOUD}


@contextlib.contextmanager
def link_proxies(settings: Sequence[Setting],
                 endpoints: dict[str, str]) -> Iterator[dict[str, str]]:
    """A shaping proxy for every hop of every setting (``links_for``), relaying to the hop's
    receiving tier at ``endpoints[tier]``, all in one child process; yields the address to
    dial for each, by ``"setting:src-dst"``."""
    names, specs = [], []
    for s in settings:
        for (a, b), link in links_for(s).items():
            names.append(f"{s.name}:{a}-{b}")
            specs.append(ProxySpec(endpoints[b], link.bandwidth_bps, link.latency_s))
    with proxies_in_child(specs) as (addresses, _):
        yield dict(zip(names, addresses))


def scenario_for(profile: Profile, setting: Setting, speeds: dict[str, float]) -> Scenario:
    hosts = tuple(Host(t, t, scale_profile(profile, speeds[t], t)) for t in TIERS)
    return Scenario(TIERS, hosts, links_for(setting))


def measure(plans: dict[str, Plan], dial: dict[tuple[str, str], str],
            inputs: tuple[torch.Tensor, ...], reference: torch.Tensor, requests: int,
            min_requests: int, budget_s: float, setting: str, speeds: dict[str, float],
            warmup: int = 2, on_request: OnRequest | None = None,
            codecs: dict[str, list[str]] | None = None,
            check: Callable[[str, torch.Tensor, torch.Tensor], float] | None = None) -> list[Run]:
    """Run each labelled plan through the emulated links, one request of each in turn (so a
    drift of the machine's speed over the minutes this takes hits every plan alike, and a
    comparison between them stays fair), ``requests`` rounds or until ``budget_s`` is spent
    after ``min_requests``. Every answer must equal ``reference``, unless ``check(label,
    output, reference)`` is given: then it returns the answer's loss and raises where the loss
    is outside the plan's bound. ``codecs[label]``: the plan's per-hop codecs (raw if absent).
    ``on_request(setting, label, plan, measurement)`` is told of every request, warm-up ones
    too, as it ends."""
    from ..runtime.client import SplitClient

    def endpoints(p: Plan) -> list[str]:
        tiers = [TIERS[t] for t in p.route.tiers]
        return [dial[(tiers[i - 1], tiers[i])] for i in range(1, len(tiers))]

    runs = [Run(setting, label, p, speeds) for label, p in plans.items()]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(SplitClient(
            r.plan.to_dict(), endpoints(r.plan), deadline_s=120.0,
            codec=(codecs or {}).get(r.label, "raw"))) for r in runs]
        start = time.monotonic()
        for i in range(warmup + requests):
            for run, client in zip(runs, clients):
                output, m = client.infer(*inputs)
                if check is not None:
                    run.seen_loss = max(run.seen_loss, check(run.label, output, reference))
                elif not torch.equal(output, reference):
                    raise AssertionError(f"{run.label} under {setting}: the split model's answer "
                                         "differs from the whole model's")
                run.fallbacks += m.fallback
                run.first_hop_bytes = m.hops[0].bytes_sent if m.hops else 0
                if on_request is not None:
                    on_request(setting, run.label, run.plan, m)
                if i >= warmup:
                    run.measured_s.append(m.total_s)
            if i + 1 - warmup >= min_requests and time.monotonic() - start > budget_s:
                break
    return runs


def run_testbed(model: str = "resnet18", settings: Sequence[Setting] = SETTINGS,
                requests: int = 10, min_requests: int = 3, budget_s: float = 30.0,
                caps: dict[str, float] | None = None, profile_repeat: int = 10,
                log=print, on_request: OnRequest | None = None, joint: Any = None,
                inputs: tuple[torch.Tensor, ...] | None = None) -> list[Run]:
    """Profile ``model`` here, then for each setting measure each tier's speed factor, plan,
    and measure the chosen plan and the two baselines (with ``joint``, a ``joint.JointSetup``:
    its four codec plans). Returns the runs (each with the speed factors its plan was made
    with). ``inputs``: the request (default: the zoo's example). ``on_request``: see
    ``measure`` (a live view)."""
    from ..runtime.launch import spawn

    caps = dict(caps or CAPS)
    if not cpucap.available():
        log("CPU caps need root and cgroups: every tier runs at this machine's full speed")
        caps = {t: 1.0 for t in TIERS}
    torch.set_num_threads(1)  # every tier: one thread, a share of one CPU
    zoo = entry(model)
    module = zoo.build()
    inputs = inputs if inputs is not None else zoo.example_inputs()
    with torch.no_grad():
        reference = module(*inputs)
    log(f"profiling {model} here (1 thread) ...")
    profile = profile_model(module, inputs, name=model,
                            settings=ProfileSettings(threads=1, repeat=profile_repeat))
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        servers = {t: stack.enter_context(spawn([model], threads=1)) for t in TIERS[1:]}
        # the proxies live in a child process: this one is capped as the device below
        dial = stack.enter_context(link_proxies(settings, {t: s.endpoint
                                                           for t, s in servers.items()}))
        for tier, server in servers.items():
            if caps[tier] < 1.0:
                stack.enter_context(cpucap.CpuCap(caps[tier])).add(server.process.pid)
        if caps["device"] < 1.0:  # this process plays the device from here on
            stack.enter_context(cpucap.CpuCap(caps["device"])).add(os.getpid())
        endpoints = {t: s.endpoint for t, s in servers.items()}
        for s in settings:
            # measured again for each setting: a shared machine's speed drifts over the minutes
            # a setting takes, and the plan should see the speeds of the moment it runs in
            speeds = measure_speeds(model, profile, module, inputs, endpoints)
            log(f"{s.name}: measured speed factors "
                + ", ".join(f"{t} x{v:.3f}" for t, v in speeds.items()))
            sc = scenario_for(profile, s, speeds)
            routes = {(a, b): dial[f"{s.name}:{a}-{b}"] for a, b in links_for(s)}
            if joint is None:
                plans = {"chosen": plan(sc), "all-device": baseline(sc, "device"),
                         "all-cloud": baseline(sc, "cloud")}
                labelled, extra = {}, {}
            else:
                labelled = joint.plans(sc)
                plans = {k: v.plan for k, v in labelled.items()}
                extra = {"codecs": {k: list(v.codecs) for k, v in labelled.items()},
                         "check": joint.checker(labelled, s.name)}
            log(f"{s.name}: running {', '.join(plans)}, one request of each in turn ...")
            got = measure(plans, routes, inputs, reference, requests, min_requests,
                          budget_s * len(plans), s.name, speeds, on_request=on_request, **extra)
            for r in got:
                r.detail = labelled.get(r.label)
            runs += got
    return runs


def measure_speeds(model: str, profile: Profile, module: torch.nn.Module,
                   inputs: tuple[torch.Tensor, ...], endpoints: dict[str, str],
                   repeat: int = 5, device_executor: Executor | None = None) -> dict[str, float]:
    """Each tier's speed against the profile (Σ of its nodes' seconds over the tier's own
    median seconds for the whole model): the device in this process (on ``device_executor``
    when given, where the device's stages will run), each server by its reported compute time
    for a plan that puts everything on it (no link in the way)."""
    from ..runtime.speed import local_speed, server_speed

    def here() -> float:
        return local_speed(lambda: module(*inputs), profile, repeat)

    speeds = {"device": here() if device_executor is None else
              device_executor.submit(here).result()}
    for tier, endpoint in endpoints.items():
        speeds[tier] = server_speed(model, profile, endpoint, inputs, tier, repeat)
    return speeds


def report(runs: Sequence[Run]) -> list[dict]:
    """Per setting: the chosen plan's prediction and measurement next to the baselines'."""
    rows = []
    for name in dict.fromkeys(r.setting for r in runs):
        by = {r.label: r for r in runs if r.setting == name}
        chosen = by["chosen"]
        best_baseline = min(by["all-device"].median_s, by["all-cloud"].median_s)
        rows.append({
            "setting": name, "placement": chosen.placement(),
            "predicted_ms": chosen.predicted_s * 1e3, "measured_ms": chosen.median_s * 1e3,
            "error": chosen.error, "requests": len(chosen.measured_s), "speeds": chosen.speeds,
            "vs_best_baseline": chosen.median_s / best_baseline - 1.0,
            **{f"{k}_{v}": getattr(by[k], attr) * 1e3 for k in ("all-device", "all-cloud")
               for v, attr in (("predicted_ms", "predicted_s"), ("measured_ms", "median_s"))},
            "fallbacks": sum(r.fallbacks for r in by.values()),
        })
    return rows


def plot(rows: Sequence[dict], path: Path, title: str,
         series: Sequence[tuple[str, str, str]] | None = None) -> None:
    """Predicted (light) and measured bars per setting; ``series``: (name, predicted key,
    measured key) per plan (default: the chosen plan and the two baselines)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r["setting"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = series or [("chosen", "predicted_ms", "measured_ms"),
                        ("all-device", "all-device_predicted_ms", "all-device_measured_ms"),
                        ("all-cloud", "all-cloud_predicted_ms", "all-cloud_measured_ms")]
    width = 0.8 / (2 * len(series))
    for i, (name, pred, meas) in enumerate(series):
        ax.bar(x + (2 * i - len(series) + 0.5) * width, [r[pred] for r in rows], width, label=f"{name} predicted",
               alpha=0.45, color=f"C{i}")
        ax.bar(x + (2 * i - len(series) + 1.5) * width, [r[meas] for r in rows], width,
               label=f"{name} measured", color=f"C{i}")
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("latency of one request (ms, median)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
