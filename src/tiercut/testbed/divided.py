"""A divided plan run for real: one request's run of layers tiled across several edge servers.

The device (this process) reaches each of ``nodes`` edge servers over its own emulated access
link (the setting); the edge servers reach each other over an emulated LAN (``lan``). Each edge
server is its own process, pinned to a CPU and, where the machine allows it (root and cgroups),
held to a fraction of one CPU, as is the device. Every server may fan out to the others' LAN
proxies (``serve --peers``), so whichever the planner makes the coordinator can divide.

Each host's speed is measured where it runs (as ``run.measure_speeds`` does), the planner sees
the profile measured here scaled by them, and ``decompose.plan_with_division`` chooses the cut
and the divided run. Three plans are then measured one request of each in turn: all-device,
the best undivided plan (one edge server), and the divided plan (its coordinator fanning the
run out through ``runtime.divided``, its own share computed where it is). Each is set against
its prediction; the divided answer against the whole model's (1e-5 relative: a tile's
convolution may sum in another order), the others bit for bit.
"""
from __future__ import annotations

import contextlib
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..decompose.planner import DividedPlan, plan_with_division
from ..graph.trace import trace
from ..link.child import ProxySpec, proxies_in_child
from ..measure import cpucap
from ..measure.predict import scale_profile
from ..measure.profiler import ProfileSettings, profile_model
from ..planner import Host, Link, Scenario, baseline
from ..planner.plan import Plan
from ..zoo import entry
from .run import Measured, Setting, measure_speeds

LAN = Link(100e6, 0.001)  # between edge servers: a switched 100 Mbit/s LAN
DEVICE_CAP, EDGE_CAP = 0.15, 0.4  # fractions of one CPU
TOLERANCE = 1e-5  # a divided answer's largest error, relative to the answer's largest value


@dataclass
class DividedRun(Measured):
    """One plan of the divided testbed, measured."""

    label: str  # "all-device", "undivided", "divided"
    plan: Plan
    data: dict  # the plan's JSON (with its division, for "divided")
    measured_s: list[float] = field(default_factory=list)
    server_s: list[float] = field(default_factory=list)  # the edge server's compute, measured
    worst_error: float = 0.0  # the largest relative error against the whole model's answer


@dataclass
class DividedTestbed:
    """What ``run_divided_testbed`` measured."""

    model: str
    setting: Setting
    speeds: dict[str, float]  # host -> speed factor against this machine's one thread
    divided: DividedPlan
    runs: list[DividedRun]
    capped: bool

    def by(self, label: str) -> DividedRun | None:
        return next((r for r in self.runs if r.label == label), None)


def free_ports(n: int) -> list[int]:
    """``n`` ports free on loopback now (held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def edge_names(nodes: int) -> list[str]:
    return [f"edge-{j + 1}" for j in range(nodes)]


def scenario_of(profile: Any, speeds: dict[str, float], setting: Setting,
                lan: Link) -> Scenario:
    """device + the edge servers, each with its measured speed; the device's link to every edge
    server is the setting, the edge servers' links to each other the LAN."""
    hosts = [Host("device", "device", scale_profile(profile, speeds["device"], "device"))]
    hosts += [Host(h, "edge", scale_profile(profile, v, h)) for h, v in speeds.items()
              if h != "device"]
    return Scenario(("device", "edge"), tuple(hosts),
                    {("device", "edge"): Link(setting.rate_bps, setting.delay_s),
                     ("edge", "edge"): lan})


def run_divided_testbed(model: str = "resnet18", nodes: int = 3,
                        setting: Setting = Setting("Wi-Fi-like", 100e6, 0.005),
                        lan: Link = LAN, requests: int = 5, warmup: int = 2,
                        caps: tuple[float, float] = (DEVICE_CAP, EDGE_CAP),
                        profile_repeat: int = 5, log: Callable[[str], None] = print
                        ) -> DividedTestbed:
    """Measure all-device, the best undivided plan and the divided plan of ``model`` with
    ``nodes`` edge servers (see the module's docstring)."""
    from ..runtime.client import SplitClient
    from ..runtime.launch import spawn
    from ..runtime.stageplan import StagePlan

    if nodes < 2:
        raise ValueError(f"a divided testbed needs at least 2 edge servers, got {nodes}")
    capped = cpucap.available()
    if not capped:
        log("CPU caps need root and cgroups: every host runs at this machine's full speed")
    torch.set_num_threads(1)
    zoo = entry(model)
    module, inputs = zoo.build(), zoo.example_inputs()
    graph = trace(module, inputs, name=model)
    with torch.no_grad():
        reference = module(*inputs)
    log(f"profiling {model} here (1 thread) ...")
    profile = profile_model(module, inputs, name=model,
                            settings=ProfileSettings(threads=1, repeat=profile_repeat))
    names = edge_names(nodes)
    ports = free_ports(nodes)
    targets = [f"127.0.0.1:{p}" for p in ports]
    specs = [ProxySpec(t, setting.rate_bps, setting.delay_s) for t in targets]  # from the device
    specs += [ProxySpec(t, lan.bandwidth_bps, lan.latency_s) for t in targets]  # on the LAN
    with contextlib.ExitStack() as stack:
        addresses, _ = stack.enter_context(proxies_in_child(specs))
        access, on_lan = addresses[:nodes], addresses[nodes:]
        servers = [stack.enter_context(spawn([model], threads=1, cpus=[j % 2], port=ports[j],
                                             extra_args=["--peers", ",".join(on_lan)]))
                   for j in range(nodes)]
        if capped:
            for s in servers:
                stack.enter_context(cpucap.CpuCap(caps[1])).add(s.process.pid)
            stack.enter_context(cpucap.CpuCap(caps[0])).add(os.getpid())
        speeds = measure_speeds(model, profile, module, inputs,
                                {h: s.endpoint for h, s in zip(names, servers)})
        log("measured speed factors " + ", ".join(f"{h} x{v:.3f}" for h, v in speeds.items()))
        sc = scenario_of(profile, speeds, setting, lan)
        divided = plan_with_division(sc, graph, "edge")
        alone = baseline(sc, "device")
        runs = [DividedRun("all-device", alone, alone.to_dict()),
                DividedRun("undivided", divided.undivided, divided.undivided.to_dict())]
        if divided.run is not None:
            runs.append(DividedRun("divided", divided.plan, divided.to_dict()))
        else:
            log("the planner divides no run here: it predicts no gain")
        peers = dict(zip(names, on_lan))
        clients = []
        for r in runs:
            plan = StagePlan.from_dict(r.data, peers=peers if r.label == "divided" else None)
            hops = [access[names.index(h)] for h in r.plan.route.hosts[1:]]
            clients.append(stack.enter_context(SplitClient(plan, hops, deadline_s=120.0)))
        scale = float(reference.abs().max()) or 1.0
        log(f"running {', '.join(r.label for r in runs)}, one request of each in turn ...")
        for i in range(warmup + requests):
            for r, client in zip(runs, clients):
                t0 = time.perf_counter()
                out, m = client.infer(*inputs)
                wall = time.perf_counter() - t0
                err = float((out - reference).abs().max()) / scale
                if r.label != "divided" and not torch.equal(out, reference) or err > TOLERANCE:
                    raise AssertionError(f"{model} {r.label}: the answer is {err:.2e} "
                                         "(relative) off the whole model's")
                r.worst_error = max(r.worst_error, err)
                if i >= warmup:
                    r.measured_s.append(m.total_s if m.total_s > 0 else wall)
                    r.server_s.append(sum(t.compute_s for t in m.servers))
    return DividedTestbed(model, setting, speeds, divided, runs, capped)


def report(bed: DividedTestbed) -> dict:
    """The figures as plain data (``--json``)."""
    d = bed.divided
    rows = [{"plan": r.label, "placement": r.plan.placement(),
             "predicted_ms": r.predicted_s * 1e3, "measured_ms": r.median_s * 1e3,
             "error": r.error, "requests": len(r.measured_s), "worst_error": r.worst_error,
             "server_ms": statistics.median(r.server_s) * 1e3 if r.server_s else 0.0}
            for r in bed.runs]
    out = {"model": bed.model, "setting": bed.setting.name, "speeds": bed.speeds,
           "capped": bed.capped, "rows": rows,
           "division": d.to_dict()["division"]}
    undivided, divided = bed.by("undivided"), bed.by("divided")
    if undivided and divided:
        out["speedup_predicted"] = undivided.predicted_s / divided.predicted_s
        out["speedup_measured"] = undivided.median_s / divided.median_s
    return out

