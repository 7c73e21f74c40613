"""`tiercut simulate`: compare re-partitioning policies on a bandwidth trace (and a load trace)
with the discrete-event simulator."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import TiercutError

DEFAULT_LINKS = [("device-edge", "10mbit,20ms"), ("edge-cloud", "500mbit,5ms"),
                 ("device-cloud", "10mbit,25ms")]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(2)


def simulate_cmd(
    trace: Path = typer.Option(..., "--trace", help="bandwidth trace of the device's link "
                               "(pensieve-cooked, G-NetTrack CSV or mahimahi)"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="scenario YAML/TOML"),
    model: Optional[str] = typer.Option(None, "--model", help="profile this zoo model here and "
                                        "derive device x0.1, edge x1, cloud x5"),
    link: List[str] = typer.Option([], "--link", help="A-B=RATE,DELAY (with --model; the "
                                   "device's links take their rate from the trace)"),
    load_trace: Optional[Path] = typer.Option(None, "--load-trace", help="'<seconds> <load "
                                              "factor>' per line for --load-tier"),
    load_tier: str = typer.Option("edge", "--load-tier", help="the tier whose load varies"),
    arrivals: str = typer.Option("poisson:5/s", "--arrivals", help="poisson:R/s or periodic:R/s"),
    policy: str = typer.Option("static,adaptive,robust,loadaware,oracle", "--policy",
                               help="comma list of static, adaptive, hedged, robust (the one to "
                                    "deploy on links not seen before), loadaware, dads, "
                                    "lyapunov, oracle"),
    duration: str = typer.Option("600s", "--duration", help="simulated time, like 600s or 10m"),
    trace_scale: float = typer.Option(1.0, "--trace-scale", help="multiply the trace's rates"),
    deadline: Optional[str] = typer.Option(None, "--deadline", help="count requests slower "
                                           "than this, like 200ms"),
    fps: float = typer.Option(10.0, "--fps", help="frame-rate target of the dads policy"),
    v: float = typer.Option(1.0, "--V", help="energy weight of the lyapunov policy"),
    probe_every: float = typer.Option(1.0, "--probe-every", help="seconds without a transfer "
                                      "before the bandwidth-estimating policies probe the "
                                      "link (inf: never)"),
    window: int = typer.Option(5, "--window", help="transfers the bandwidth estimate is made "
                               "from (1: the newest alone)"),
    hedge_window: float = typer.Option(60.0, "--hedge-window", help="seconds the hedged "
                                       "policy remembers the link's slowest and fastest rates"),
    hedge_after: float = typer.Option(0.0, "--hedge-after", help="the hedged policy starts "
                                      "a race's device run once the answer is this fraction "
                                      "of the plan's predicted latency late (0: at once; more: "
                                      "less device energy; a request not raced is backed up "
                                      "once it is late against its prediction)"),
    private_input: Optional[str] = typer.Option(None, "--private-input", help="N or NODE: "
                                                "every plan keeps the input, and the first N "
                                                "nodes (or NODE and its ancestors), on the "
                                                "device"),
    seed: int = typer.Option(0, "--seed"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the results as JSON"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write the results as CSV"),
    plot: Optional[str] = typer.Option(None, "--plot", help="write PREFIX-cdf.png and "
                                       "PREFIX-timeline.png"),
) -> None:
    """Simulate each --policy on --trace and report latency, misses, energy and switches."""
    from ..adapt.policies import PolicyError, parse_policies
    from ..planner import Constraints
    from ..planner.privacy import parse_private
    from ..link.traces import load_trace as read_trace
    from ..sim import report
    from ..sim.run import prepare, read_load_trace, run_policies
    from ..sim.simulator import parse_arrivals, parse_duration

    try:
        names = parse_policies(policy)
        arr = parse_arrivals(arrivals)
        seconds = parse_duration(duration)
        deadline_s = parse_duration(deadline) if deadline else None
        if not (trace_scale > 0):
            raise ValueError(f"--trace-scale must be > 0, got {trace_scale!r}")
        bw = read_trace(trace).scaled(trace_scale) if trace_scale != 1.0 else read_trace(trace)
        load = read_load_trace(load_trace) if load_trace is not None else None
        if scenario is None and model is None:
            raise ValueError("give --scenario S.yaml or --model M")
        from rich.console import Console

        from .plan_flags import scenario_from_flags

        links = [tuple(item.split("=", 1)) for item in link] or DEFAULT_LINKS
        for item in links:
            if len(item) != 2:
                raise ValueError(f"--link {item[0]!r} must look like A-B=RATE,DELAY")
        sc = scenario_from_flags(model, [], links if scenario is None else [], scenario, True,
                                 Console(stderr=True))
        setup = prepare(sc, bw, load, load_tier if load is not None or "loadaware" in names
                        else None, fps=fps, V=v, names=names, probe_every_s=probe_every,
                        window=window, hedge_window_s=hedge_window, hedge_after=hedge_after,
                        constraints=Constraints(private_input=None if private_input is None
                                                else parse_private(private_input)))
        results = run_policies(setup, names, arr, seconds, seed, deadline_s)
    except (TiercutError, ValueError, PolicyError, OSError) as exc:
        _fail(str(exc))
        return
    print(f"trace {bw.name}: mean {bw.mean_bps / 1e6:.3g} Mbit/s; {arr.kind} {arr.rate:g}/s for "
          f"{seconds:g} s")
    print(report.table(results))
    meta = {"trace": str(trace), "arrivals": arrivals, "duration_s": seconds, "seed": seed,
            "scenario": str(scenario) if scenario else None, "model": model}
    if json_out:
        report.write_json(results, json_out, meta)
    if csv_out:
        report.write_csv(results, csv_out)
    if plot:
        for p in report.plot(results, setup.simulator.timeline, plot):
            print(f"wrote {p}")
