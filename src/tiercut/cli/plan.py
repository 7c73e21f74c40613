"""`tiercut plan`: the placement across tiers from the plan flags (or a scenario file), printed
as tables or JSON, or a bandwidth sweep's decision table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import TiercutError
from .common import _bytes, _fail, _pairs, _shape, console
from .profiling import INPUT_HELP


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{flag} value {text!r} is not a number") from None


def _tier_caps(pairs: list[tuple[str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    """--max-seconds values: seconds ("0.02", "20ms") or a share of the total ("30%")."""
    from ..planner.scenario import parse_seconds

    seconds, share = {}, {}
    for tier, value in pairs:
        if value.endswith("%"):
            p = _number("--max-seconds", value[:-1])
            if not 0 <= p <= 100:
                raise typer.BadParameter(f"--max-seconds {tier}={value}: a share is 0..100%")
            share[tier] = p / 100
        else:
            try:
                seconds[tier] = float(value)
            except ValueError:
                try:
                    seconds[tier] = parse_seconds(value)
                except TiercutError:
                    raise typer.BadParameter(f"--max-seconds {tier}={value}: give seconds "
                                             "(0.02, 20ms) or a share (30%)") from None
            if not seconds[tier] >= 0:
                raise typer.BadParameter(f"--max-seconds {tier}={value}: must be >= 0")
    return seconds, share


def plan_cmd(
    model: Optional[str] = typer.Option(None, "--model", help="profile this model here and "
                                        "derive hosts by speed factor (device=x0.1 edge=x1 "
                                        "cloud=x5 unless --tier says otherwise)"),
    tier: list[str] = typer.Option([], "--tier", help="TIER=P1[,P2...]: candidate hosts, each a "
                                   "profile JSON or (with --model) xSPEED"),
    link: list[str] = typer.Option([], "--link", help="A-B=RATE[,DELAY], A and B tiers or hosts"),
    scenario_file: Optional[Path] = typer.Option(None, "--scenario", help="YAML or TOML scenario"),
    objective: str = typer.Option("latency", "--objective",
                                  help="latency, throughput (slowest stage) or energy"),
    pin: list[str] = typer.Option([], "--pin", help="NODE=TIER"),
    forbid: list[str] = typer.Option([], "--forbid", help="NODE=TIER"),
    use_tier: list[str] = typer.Option([], "--use-tier"),
    skip_tier: list[str] = typer.Option([], "--skip-tier"),
    max_bytes: list[str] = typer.Option([], "--max-bytes", help="TIER_A-TIER_B=BYTES"),
    max_seconds: list[str] = typer.Option([], "--max-seconds", help="TIER=SECONDS (e.g. "
                                          "edge=0.02 or edge=20ms), or TIER=P% of the total"),
    only_host: list[str] = typer.Option([], "--only-host", help="use only these hosts"),
    never_host: list[str] = typer.Option([], "--never-host", help="never use this host"),
    private_input: Optional[str] = typer.Option(None, "--private-input", help="N or NODE: the "
                                                "input never leaves the device; it and the "
                                                "first N nodes (or NODE and its ancestors) "
                                                "run there"),
    no_return: bool = typer.Option(False, "--no-return", help="do not count the outputs' trip back"),
    input_bytes: Optional[int] = typer.Option(None, "--input-bytes", min=0,
                                              help="the model input's size, if not the profile's"),
    method: str = typer.Option("auto", "--method", help="auto, chain, mincut, milp or brute"),
    codecs_path: Optional[Path] = typer.Option(None, "--codecs", help="a tiercut-codecs/1 table "
                                               "(tiercut calibrate): choose cut and codec "
                                               "together"),
    max_loss: float = typer.Option(0.01, "--max-loss", help="with --codecs: the largest "
                                   "metric loss allowed (top-1 drop, or 1 - cosine)"),
    loss_margin: float = typer.Option(1.645, "--loss-margin", min=0.0, help="with --codecs: "
                                      "admit a codec when its calibrated loss plus this many "
                                      "standard errors is within --max-loss (1.645: one-sided "
                                      "95%; 0 trusts the calibration's mean)"),
    divide: Optional[str] = typer.Option(None, "--divide", help="TIER: one run of layers may "
                                         "be tiled across that tier's hosts (needs --model and "
                                         "a TIER-TIER link between them)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="with --model "
                                              "module:factory: one float32 input, e.g. "
                                              "1,3,224,224"),
    inputs: list[str] = typer.Option([], "--input", help=INPUT_HELP),
    as_json: bool = typer.Option(False, "--json"),
    sweep: Optional[str] = typer.Option(None, "--sweep-bandwidth", help="LOW..HIGH, e.g. "
                                        "0.1mbit..1gbit: print the decision table's breakpoints"),
    plot: Path = typer.Option(Path("sweep.png"), "--plot", help="PNG for --sweep-bandwidth"),
) -> None:
    """Choose the placement across tiers that minimises latency (or throughput, or device energy)."""
    import json as _json

    from ..planner import Constraints, baseline, plan
    from ..planner.privacy import parse_private
    from .plan_flags import scenario_from_flags

    try:
        shape = _shape(input_shape)
        if inputs:
            from ..zoo import as_inputs
            as_inputs(inputs)  # a bad --input is named before anything is profiled
        scenario = scenario_from_flags(model, tier, _pairs(link, "--link"),
                                       scenario_file, not no_return, console, input_bytes,
                                       shape, inputs)
        seconds, share = _tier_caps(_pairs(max_seconds, "--max-seconds"))
        constraints = Constraints(
            pin=dict(_pairs(pin, "--pin")), forbid=tuple(_pairs(forbid, "--forbid")),
            use_tiers=tuple(use_tier), skip_tiers=tuple(skip_tier),
            max_bytes={k: _number("--max-bytes", v) for k, v in _pairs(max_bytes, "--max-bytes")},
            max_seconds=seconds, max_share=share, only_hosts=tuple(only_host),
            never_hosts=tuple(never_host),
            private_input=None if private_input is None else parse_private(private_input))
        if divide is not None:
            _divided(model, scenario, constraints, divide, as_json, (shape, inputs))
            return
        if sweep and codecs_path is not None:
            _codec_sweep(scenario, constraints, sweep, plot, codecs_path, max_loss, loss_margin)
            return
        if sweep:
            _sweep(scenario, constraints, sweep, plot)
            return
        joint = None
        if codecs_path is not None:
            from .calibrate import plan_with_table
            joint = plan_with_table(scenario, codecs_path, max_loss, objective, constraints,
                                    method, z=loss_margin)
            result = joint.plan
        else:
            result = plan(scenario, objective, constraints, method)
        device = baseline(scenario, scenario.tiers[0])
        last = _top_tier(scenario.tiers, constraints)
        top = baseline(scenario, last) if last is not None else None
    except TiercutError as exc:
        _fail(exc)
    # an all-cloud baseline sends the input: with a private input it is what privacy rules out
    private = bool(result.private) or (constraints.private_input is not None)
    if as_json:
        data = joint.to_dict() if joint is not None else result.to_dict()
        data["baselines"] = {device.method: device.total_s, **({top.method: top.total_s}
                                                               if top else {})}
        if top and private:
            data["baselines_breaking_private_input"] = [top.method]
        print(_json.dumps(data, indent=1))
        return
    _print_plan(result, device, top, private)


def _top_tier(tiers: tuple[str, ...], constraints) -> Optional[str]:  # noqa: ANN001
    """The last tier the plan may use, for the all-on-one-tier baseline beside the device's: a
    tier given to --skip-tier (or left out of --use-tier) is not one, so no link to it is needed."""
    usable = [t for t in tiers[1:] if t not in constraints.skip_tiers
              and (not constraints.use_tiers or t in constraints.use_tiers)]
    return usable[-1] if usable else None


def _divided(model, scenario, constraints, tier: str, as_json: bool,  # noqa: ANN001
             model_inputs: tuple = (None, ())) -> None:
    """The plan where one run of ``tier``'s nodes may be tiled across its hosts."""
    import json as _json

    from ..decompose.planner import plan_with_division
    from ..graph.trace import trace
    from ..planner import baseline
    from .plan_flags import model_entry

    if model is None:
        raise typer.BadParameter("--divide needs --model (the graph is traced to tile it)")
    e = model_entry(model, *model_inputs)
    graph = trace(e.build(), e.example_inputs(), name=model, leaf_modules=e.leaf_modules)
    d = plan_with_division(scenario, graph, tier, constraints)
    if as_json:
        print(_json.dumps(d.to_dict(), indent=1))
        return
    _print_plan(d.plan, baseline(scenario, scenario.tiers[0]), None)
    if d.run is None:
        console.print(f"no run divided: tiling across {tier}'s "
                      f"{len(scenario.hosts_of(tier))} host(s) predicts no gain")
        return
    div = d.division
    console.print(f"[bold]divided[/bold] {d.run[0]} .. {d.run[1]} across {', '.join(div.workers)}"
                  f" (row bounds {list(div.bounds)}; parts {', '.join(f'{s * 1e3:.1f}' for s in div.part_s)}"
                  f" ms) from {d.coordinator}: predicted {d.plan.total_s * 1e3:.2f} ms against "
                  f"{d.undivided.total_s * 1e3:.2f} ms undivided")


def _range(text: str) -> tuple[float, float]:
    from ..planner.scenario import parse_rate

    low, sep, high = text.partition("..")
    if not sep:
        raise typer.BadParameter(f"--sweep-bandwidth {text!r} must look like 0.1mbit..1gbit")
    return parse_rate(low), parse_rate(high)


def _codec_sweep(scenario, constraints, text: str, path: Path, codecs_path: Path,  # noqa: ANN001
                 max_loss: float, z: float) -> None:
    """The joint cut+codec plan's regimes over the range, beside all-device and the input sent
    to the last tier with its best calibrated input codec."""
    from ..codecs.calibrate import CodecTable
    from ..measure.plot import plot_sweep
    from ..planner.codec_sweep import sweep_with_codecs

    low_bps, high_bps = _range(text)
    top = scenario.tiers[-1]
    result = sweep_with_codecs(scenario, CodecTable.load(codecs_path), max_loss, low_bps,
                               high_bps, constraints, z)
    rows = Table("from Mbit/s", "plan", "nodes per tier", "first hop", "loss",
                 title=f"joint cut and codec (loss <= {max_loss:g}), predicted")
    seen = set()
    for r in result.regimes:
        p, hop = r.plan.plan, (r.plan.plan.hops[0] if r.plan.plan.hops else None)
        tiers = set(p.assignment.values())
        kind = ("all-device" if tiers == {scenario.tiers[0]} else
                f"input to {top}" if tiers == {top} else "split")
        ratio = r.plan.choice.ratio if r.plan.choice else 1.0
        first = f"{_bytes(round(hop.bytes * ratio))} {hop.codec}" if hop else "-"
        loss = f"{r.plan.choice.loss:.4f}" if r.plan.choice else "0"
        seen.add(kind)
        rows.add_row(f"{r.from_bps / 1e6:.4g}", kind, p.placement(), first, loss)
    console.print(rows)
    console.print(f"{len(result.regimes)} regimes over {low_bps / 1e6:g}..{high_bps / 1e6:g} "
                  f"Mbit/s; {'a split wins somewhere' if 'split' in seen else 'no split wins'}")
    bases = result.baselines
    if constraints.private_input is not None or scenario.private_input is not None:
        bases = {(f"{k} (breaks the private input)" if k.startswith("input to") else k): v
                 for k, v in bases.items()}
    plot_sweep(result.grid, result.joint_s, bases,
               [r.from_bps for r in result.regimes[1:]],
               f"{scenario.hosts[0].profile.model}: joint cut+codec, {len(result.regimes)} "
               f"regimes", path, best_label="joint cut+codec plan")
    console.print(f"plot -> {path}")


def _sweep(scenario, constraints, text: str, path: Path) -> None:  # noqa: ANN001
    import numpy as np

    from ..planner import baseline
    from ..planner.table import build_table, plan_cost, with_device_bandwidth
    from ..measure.plot import plot_sweep

    low_bps, high_bps = _range(text)
    table = build_table(scenario, constraints, low_bps, high_bps)
    rows = Table("from Mbit/s", "plan: nodes per tier", "hops", title="decision table")
    starts = [low_bps, *table.breakpoints]
    for start, index in zip(starts, table.segments):
        p = table.entries[index].plan
        counts = {t: 0 for t in scenario.tiers}
        for t in p.assignment.values():
            counts[t] += 1
        rows.add_row(f"{start / 1e6:.4g}", " ".join(f"{t}:{n}" for t, n in counts.items()),
                     " ".join(f"{h.src}->{h.dst}:{_bytes(h.bytes)}" for h in p.hops) or "-")
    console.print(rows)
    grid = np.geomspace(low_bps, high_bps, 200)
    best = [plan_cost(with_device_bandwidth(scenario, b), table.best(b)) for b in grid]
    bases = {}
    for tier in (scenario.tiers[0], scenario.tiers[-1]):
        base = baseline(scenario, tier)
        bases[base.method] = [plan_cost(with_device_bandwidth(scenario, b), base) for b in grid]
    plot_sweep(grid, best, bases, table.breakpoints,
               f"{scenario.hosts[0].profile.model}: {len(table.entries)} plans, "
               f"{len(table.breakpoints)} breakpoints", path)
    console.print(f"plot -> {path}")


def _print_plan(result, device, top, private: bool = False) -> None:  # noqa: ANN001
    by_tier: dict[str, list[str]] = {}
    for node, t in result.assignment.items():
        by_tier.setdefault(t, []).append(node)
    table = Table("tier", "host", "nodes", "first .. last", "compute ms",
                  title=f"{result.model}: {result.objective} plan by {result.method}")
    for t, host in result.hosts.items():
        nodes = by_tier.get(t, [])
        span = f"{nodes[0]} .. {nodes[-1]}" if nodes else "-"
        table.add_row(t, host or "-", str(len(nodes)), span,
                      f"{result.tier_seconds.get(t, 0.0) * 1e3:.2f}")
    console.print(table)
    hops = Table("hop", "tensors that cross", "bytes", "ms (transfer + latency)")
    for h in result.hops:
        sized = [f"{n} {_bytes(b)}" for n, b in zip(h.tensors, h.tensor_bytes)] or list(h.tensors)
        names = ", ".join(sized[:4]) + (f" +{len(sized) - 4}" if len(sized) > 4 else "")
        hops.add_row(f"{h.src}->{h.dst}", names, f"{_bytes(h.bytes)} {h.codec}",
                     f"{h.seconds * 1e3:.2f}")
    if result.hops:
        console.print(hops)
    if result.private:
        p = result.private
        span = p[0] if len(p) == 1 else f"{p[0]} .. {p[-1]}"
        console.print(f"private input: the input and {span} ({len(p)} node"
                      f"{'s' * (len(p) > 1)}) never leave the {next(iter(result.hosts))}")
    console.print(f"return of the outputs: {result.return_s * 1e3:.2f} ms")
    if result.objective == "throughput":
        rate = f"{1 / result.value:.1f} requests/s" if result.value else "unbounded"
        console.print(f"[bold]slowest stage {result.value * 1e3:.2f} ms: {rate}[/bold]")
    console.print(f"[bold]predicted total {result.total_s * 1e3:.2f} ms[/bold]   baselines: "
                  f"{device.method} {device.total_s * 1e3:.2f} ms"
                  + (f", {top.method} {top.total_s * 1e3:.2f} ms" if top else "")
                  + (" (sends the input: not private)" if top and private else ""))
