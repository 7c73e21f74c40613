"""The ``tiercut`` command line: models, profile, show, predict."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import TiercutError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run one neural network across device, edge and cloud.")
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def _shape(text: Optional[str]) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"input shape {text!r} is not a list of integers like 1,3,224,224")
    if any(d < 1 for d in dims):
        raise typer.BadParameter(f"input shape {text!r} has a dimension < 1")
    return dims


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _bytes(n: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


@app.command()
def models() -> None:
    """List the zoo: name, nodes, parameters, GFLOPs and input shape (each model is traced)."""
    from . import zoo
    from .trace import trace

    from .flops import macs

    table = Table("model", "nodes", "params", "GFLOPs", "GMACs", "input",
                  caption="FLOPs count every op, a multiply-add as 2; MACs count conv/linear/"
                  "matmul multiply-adds, as published tables do")
    with console.status("tracing the zoo"):
        for name in zoo.names():
            entry = zoo.entry(name)
            model = entry.build()
            graph = trace(model, entry.example_inputs(), name=name)
            params = sum(p.numel() for p in model.parameters())
            shapes = " ".join("x".join(map(str, s.shape)) for s in entry.inputs)
            gmacs = sum(macs(n.op, n.flops) for n in graph) / 1e9
            table.add_row(name, str(len(graph.compute_nodes)), _si(params),
                          f"{graph.flops / 1e9:.2f}", f"{gmacs:.3f}", shapes)
    console.print(table)


@app.command()
def profile(
    model: str = typer.Argument(..., help="zoo name, or package.module:factory"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the JSON profile"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads"),
    batch: int = typer.Option(1, "--batch", min=1, help="batch size"),
    repeat: int = typer.Option(20, "--repeat", min=1, help="timed runs after warm-up"),
    warmup: int = typer.Option(3, "--warmup", min=0, help="untimed runs first"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                              help="for module:factory models, e.g. 1,3,224,224"),
) -> None:
    """Measure every node of MODEL on this host and save a tiercut-profile/1 JSON."""
    from .profiler import ProfileSettings, profile_model
    from .zoo import resolve

    try:
        entry = resolve(model, _shape(input_shape))
        net = entry.build()
        settings = ProfileSettings(threads=threads, repeat=repeat, warmup=warmup)
        with Progress(TextColumn("profiling {task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} runs"), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task(model, total=warmup + repeat)
            result = profile_model(net, entry.example_inputs(batch), name=model, settings=settings,
                                   progress=lambda done, total: bar.update(task, completed=done))
        result.save(output)
    except TiercutError as exc:
        _fail(exc)
    console.print(f"{model}: {len(result.nodes)} nodes, Σ nodes "
                  f"{result.total_latency_s * 1e3:.2f} ms, whole model "
                  f"{result.model_latency_s * 1e3:.2f} ms at {result.settings['threads']} threads "
                  f"-> {output}")


@app.command()
def show(
    path: Path = typer.Argument(..., help="a tiercut-profile/1 JSON file"),
    top: int = typer.Option(10, "--top", min=1, help="how many slowest / largest nodes"),
    all_nodes: bool = typer.Option(False, "--all", help="print every node, not only the top"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw latency and size to a PNG"),
) -> None:
    """Print a profile: per-node table, the slowest nodes, the largest outputs."""
    from .profile import Profile

    try:
        prof = Profile.load(path)
    except TiercutError as exc:
        _fail(exc)
    facts = [str(prof.host[k]) for k in ("cpu",) if prof.host.get(k)]
    facts += [f"{prof.host['threads']} threads"] if prof.host.get("threads") else []
    facts += [f"torch {prof.host['torch']}"] if prof.host.get("torch") else []
    console.print(f"[bold]{prof.model}[/bold] on {prof.host.get('name', '?')}"
                  f"{' (' + ', '.join(facts) + ')' if facts else ''}", highlight=False)
    if prof.predicted:
        console.print(f"[yellow]predicted, not measured:[/yellow] {prof.predicted}", highlight=False)
    whole = f"{prof.model_latency_s * 1e3:.2f} ms" if prof.model_latency_s else "not measured"
    console.print(f"{len(prof.nodes)} nodes, input {_bytes(prof.input_bytes)}, Σ nodes "
                  f"{prof.total_latency_s * 1e3:.2f} ms, whole model {whole}")
    if all_nodes:
        console.print(_node_table("nodes in topological order", prof.nodes))
    console.print(_node_table(f"slowest {top}",
                              sorted(prof.nodes, key=lambda n: -n.latency_s)[:top]))
    console.print(_node_table(f"largest {top} outputs",
                              sorted(prof.nodes, key=lambda n: -n.output_bytes)[:top]))
    if plot:
        from .plot import plot_profile

        plot_profile(prof, plot)
        console.print(f"plot -> {plot}")


@app.command()
def predict(
    source: str = typer.Argument(..., help="a profile JSON (measured elsewhere), or a model name "
                                 "or module:factory to predict from its graph"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the predicted profile"),
    speed: Optional[float] = typer.Option(None, "--speed",
                                          help="the target host is SPEED x as fast as SOURCE's"),
    fit: Optional[str] = typer.Option(None, "--fit", help="comma-separated profiles measured on "
                                      "the target host, to fit a latency regression on"),
    name: str = typer.Option("predicted-host", "--name", help="the target host's name"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape"),
) -> None:
    """Write a tiercut-profile/1 for a host you do not have, marked as predicted."""
    from .predict import LatencyPredictor, scale_profile
    from .profile import Profile

    if (speed is None) == (fit is None):
        raise typer.BadParameter("give exactly one of --speed (a speed factor) or --fit "
                                 "(profiles measured on the target host)")
    try:
        if source.endswith(".json"):
            base = Profile.load(source)
        else:
            from .trace import trace
            from .zoo import resolve

            entry = resolve(source, _shape(input_shape))
            base = Profile.from_graph(trace(entry.build(), entry.example_inputs(), name=source))
        if speed is not None:
            result = scale_profile(base, speed, name)
        else:
            predictor = LatencyPredictor.fit([Profile.load(p) for p in fit.split(",") if p])
            result = predictor.predict(base, host_name=name)
        result.save(output)
    except (TiercutError, ValueError) as exc:
        _fail(exc)
    console.print(f"{result.model} on {name} (predicted): Σ nodes "
                  f"{result.total_latency_s * 1e3:.2f} ms -> {output}")


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{flag} value {text!r} is not a number") from None


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"{flag} {item!r} must look like KEY=VALUE")
        out.append((key, value))
    return out


def _tier_caps(pairs: list[tuple[str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    """--max-seconds values: seconds ("0.02", "20ms") or a share of the total ("30%")."""
    from .planner.scenario import parse_seconds

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


@app.command("plan")
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
    as_json: bool = typer.Option(False, "--json"),
    sweep: Optional[str] = typer.Option(None, "--sweep-bandwidth", help="LOW..HIGH, e.g. "
                                        "0.1mbit..1gbit: print the decision table's breakpoints"),
    plot: Path = typer.Option(Path("sweep.png"), "--plot", help="PNG for --sweep-bandwidth"),
) -> None:
    """Choose the placement across tiers that minimises latency (or throughput, or device energy)."""
    import json as _json

    from .planner import Constraints, baseline, plan
    from .planner.flags import scenario_from_flags

    try:
        scenario = scenario_from_flags(model, tier, _pairs(link, "--link"),
                                       scenario_file, not no_return, console, input_bytes)
        seconds, share = _tier_caps(_pairs(max_seconds, "--max-seconds"))
        constraints = Constraints(
            pin=dict(_pairs(pin, "--pin")), forbid=tuple(_pairs(forbid, "--forbid")),
            use_tiers=tuple(use_tier), skip_tiers=tuple(skip_tier),
            max_bytes={k: _number("--max-bytes", v) for k, v in _pairs(max_bytes, "--max-bytes")},
            max_seconds=seconds, max_share=share, only_hosts=tuple(only_host),
            never_hosts=tuple(never_host))
        if sweep:
            _sweep(scenario, constraints, sweep, plot)
            return
        joint = None
        if codecs_path is not None:
            from .cli_calibrate import plan_with_table
            joint = plan_with_table(scenario, codecs_path, max_loss, objective, constraints,
                                    method, z=loss_margin)
            result = joint.plan
        else:
            result = plan(scenario, objective, constraints, method)
        device = baseline(scenario, scenario.tiers[0])
        top = baseline(scenario, scenario.tiers[-1]) if len(scenario.tiers) > 1 else None
    except TiercutError as exc:
        _fail(exc)
    if as_json:
        data = joint.to_dict() if joint is not None else result.to_dict()
        data["baselines"] = {f"all-{scenario.tiers[0]}": device.total_s,
                             **({f"all-{scenario.tiers[-1]}": top.total_s} if top else {})}
        print(_json.dumps(data, indent=1))
        return
    _print_plan(result, device, top)


def _sweep(scenario, constraints, text: str, path: Path) -> None:  # noqa: ANN001
    import numpy as np

    from .planner import baseline
    from .planner.scenario import parse_rate
    from .planner.table import build_table, plan_cost, with_device_bandwidth
    from .plot import plot_sweep

    low, sep, high = text.partition("..")
    if not sep:
        raise typer.BadParameter(f"--sweep-bandwidth {text!r} must look like 0.1mbit..1gbit")
    low_bps, high_bps = parse_rate(low), parse_rate(high)
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


def _print_plan(result, device, top) -> None:  # noqa: ANN001
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
    hops = Table("hop", "tensors", "bytes", "ms (transfer + latency)")
    for h in result.hops:
        names = ", ".join(h.tensors[:4]) + (f" +{len(h.tensors) - 4}" if len(h.tensors) > 4 else "")
        hops.add_row(f"{h.src}->{h.dst}", names, f"{_bytes(h.bytes)} {h.codec}",
                     f"{h.seconds * 1e3:.2f}")
    if result.hops:
        console.print(hops)
    console.print(f"return of the outputs: {result.return_s * 1e3:.2f} ms")
    if result.objective == "throughput":
        rate = f"{1 / result.value:.1f} requests/s" if result.value else "unbounded"
        console.print(f"[bold]slowest stage {result.value * 1e3:.2f} ms: {rate}[/bold]")
    console.print(f"[bold]predicted total {result.total_s * 1e3:.2f} ms[/bold]   baselines: "
                  f"{device.method} {device.total_s * 1e3:.2f} ms"
                  + (f", {top.method} {top.total_s * 1e3:.2f} ms" if top else ""))


def _node_table(title: str, nodes) -> Table:  # noqa: ANN001
    table = Table("node", "op", "latency ms", "± iqr", "output", "MFLOPs", title=title)
    for n in nodes:
        table.add_row(n.name, n.op, f"{n.latency_s * 1e3:.3f}", f"{n.latency_spread_s * 1e3:.3f}",
                      _bytes(n.output_bytes), f"{n.flops / 1e6:.1f}")
    return table


@app.command("testbed")
def testbed_cmd(
    model: str = typer.Option("resnet18", "--model", help="zoo model"),
    setting: list[str] = typer.Option([], "--setting", help="NAME=RATE,DELAY for the device's "
                                      "link, e.g. LTE-like=10mbit,20ms (default: 3G-, LTE- and "
                                      "Wi-Fi-like at 1, 10, 100 Mbit/s, 20 ms)"),
    requests: int = typer.Option(10, "--requests", min=1, help="requests per plan and setting"),
    budget: float = typer.Option(30.0, "--budget", min=0.0,
                                 help="seconds per plan: the rounds (one request of each plan) "
                                 "stop once the plans together spent this times their count "
                                 "(>= 3 rounds run)"),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="PNG of predicted and measured"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the figures as JSON"),
) -> None:
    """Plan device/edge/cloud here, run each plan for real across tier servers behind emulated
    links, and print predicted against measured latency next to the baselines."""
    import json as _json

    from .planner.scenario import parse_link
    from .testbed import SETTINGS, Setting, plot, report, run_testbed

    try:
        settings = [Setting(name, (link := parse_link(value)).bandwidth_bps, link.latency_s)
                    for name, value in _pairs(setting, "--setting")] or list(SETTINGS)
        runs = run_testbed(model, settings, requests, budget_s=budget,
                           log=lambda text: console.print(f"[dim]{text}[/dim]"))
    except TiercutError as exc:
        _fail(exc)
    rows = report(runs)
    from rich import box

    table = Table("link", "chosen plan", "pred", "meas", "err", "all-device", "all-cloud",
                  "vs best", box=box.SIMPLE, pad_edge=False, padding=(0, 1, 0, 0),
                  title=f"{model}: split inference, predicted against measured")
    for r in rows:
        table.add_row(r["setting"], r["placement"], f"{r['predicted_ms']:.1f}",
                      f"{r['measured_ms']:.1f}", f"{r['error']:+.1%}",
                      f"{r['all-device_predicted_ms']:.0f} / {r['all-device_measured_ms']:.0f}",
                      f"{r['all-cloud_predicted_ms']:.0f} / {r['all-cloud_measured_ms']:.0f}",
                      f"{r['vs_best_baseline']:+.1%}")
    console.print(table)
    console.print("ms; meas: median of each plan's requests (n per plan: "
                  f"{', '.join(str(r['requests']) for r in rows)}); baselines as predicted / "
                  "measured; vs best: the chosen plan against the faster baseline, both measured")
    console.print("speed against here (1 thread), device/edge/cloud, measured before each "
                  "setting's plans: " + "; ".join(
                      f"{r['setting']} " + "/".join(f"x{v:.3f}" for v in r["speeds"].values())
                      for r in rows))
    if plot_path:
        plot(rows, plot_path, f"{model}: predicted vs measured per link setting")
        console.print(f"plot -> {plot_path}")
    if json_path:
        json_path.write_text(_json.dumps({"model": model, "rows": rows}, indent=1))


def _register_runtime_commands() -> None:
    # Defined in their own modules (the runtime's and the link emulator's imports stay out of
    # the planning commands' start-up).
    from .cli_calibrate import calibrate_cmd
    from .cli_link import link_cmd
    from .cli_runtime import bench_cmd, infer_cmd, serve_cmd
    from .cli_simulate import simulate_cmd

    app.command("serve")(serve_cmd)
    app.command("infer")(infer_cmd)
    app.command("bench")(bench_cmd)
    app.command("link")(link_cmd)
    app.command("simulate")(simulate_cmd)
    app.command("calibrate")(calibrate_cmd)


_register_runtime_commands()

if __name__ == "__main__":
    app()
