"""`tiercut cluster plan`: the fastest pipeline of a model over a cluster of nodes; `tiercut
cluster testbed`: unequal nodes run on this machine, predicted against measured."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import TiercutError
from .common import _fail, console

cluster_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Place a pipeline of model stages on many nodes for throughput.")


@cluster_app.command("plan")
def cluster_plan_cmd(
    scenario: Path = typer.Argument(..., help="cluster YAML or JSON (nodes, links, medium, "
                                    "source, sink)"),
    model: Optional[str] = typer.Option(None, "--model", help="profile this zoo model here as "
                                        "the reference that nodes given by speed scale"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="a profile JSON as "
                                             "that reference instead"),
    method: str = typer.Option("swarm", "--method", help="exact (<= 8 nodes), swarm or chain"),
    latency_cap: Optional[str] = typer.Option(None, "--latency-cap", help="a frame's latency "
                                              "at most, e.g. 80ms"),
    seed: int = typer.Option(0, "--seed"),
    cuts: str = typer.Option("single", "--cuts", help="single (where one tensor crosses) or "
                             "all"),
    marginal: bool = typer.Option(False, "--marginal", help="also: the best plan on the k "
                                  "fastest nodes, k = 1..N"),
    divide: bool = typer.Option(False, "--divide", help="let a stage's nodes divide each frame "
                                "by rows (shortens a frame: what a tight --latency-cap needs); "
                                "needs --model, whose graph is traced here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Plan MODEL over the cluster in SCENARIO and print the stages and predicted figures."""
    from ..cluster import load_cluster, marginal_nodes, plan_cluster
    from ..measure.profile import Profile
    from ..planner.scenario import parse_seconds

    try:
        cluster = load_cluster(scenario)
        ref = Profile.load(reference) if reference else _profiled(model) if model else None
        cap = parse_seconds(latency_cap) if latency_cap else None
        if divide and not model:
            raise typer.BadParameter("--divide needs --model: the zoo model whose graph a "
                                     "stage's nodes divide")
        graph = _traced(model) if divide else None
        plan = plan_cluster(cluster, ref, method, cap, seed, cuts, divide=graph)
        rows = marginal_nodes(cluster, ref, method, cap, seed, cuts,
                              divide=graph) if marginal else []
    except TiercutError as exc:
        _fail(exc)
    if as_json:
        data = plan.to_dict()
        if marginal:
            data["marginal"] = [{"k": r.k, "nodes": list(r.nodes), "throughput_fps":
                                 r.throughput_fps, "gain": r.gain, "helps": r.helps}
                                for r in rows]
        print(json.dumps(data, indent=1))
        return
    console.print(f"{plan.model} on {len(cluster.nodes)} nodes ({method}): "
                  f"{plan.throughput_fps:.2f} frames/s, latency {plan.latency_s * 1e3:.1f} ms, "
                  f"bottleneck {plan.bottleneck}", highlight=False)
    table = Table("stage", "nodes", "mode", "graph nodes", "busy ms/frame", "utilisation",
                  "MB in", "memory MB")
    for j, s in enumerate(plan.stages, 1):
        table.add_row(str(j), ("/" if s.division else "+").join(s.nodes), s.mode +
                      (f" ({s.division['first']}..{s.division['last']} by rows "
                       f"{s.division['row_bounds']})" if s.division else ""),
                      f"{s.first}..{s.last} "
                      f"({s.n_graph_nodes})", f"{s.period_s * 1e3:.2f}",
                      f"{100 * s.utilisation:.0f} %", f"{s.bytes_in / 1e6:.3f}",
                      f"{s.memory_bytes / 1e6:.1f}")
    console.print(table)
    for r in rows:
        console.print(f"k={r.k}: {r.throughput_fps:.2f} frames/s ({r.gain:.2f}x"
                      f"{', helps' if r.helps else ', no real gain' if r.k > 1 else ''}) "
                      f"on {', '.join(r.nodes)}", highlight=False)


def _traced(name: str):  # noqa: ANN202
    from ..graph.trace import trace
    from ..zoo import entry

    e = entry(name)
    return trace(e.build(), e.example_inputs(), name=name)


def _profiled(name: str):  # noqa: ANN202
    from ..measure.profiler import ProfileSettings, profile_model
    from ..zoo import entry

    e = entry(name)
    return profile_model(e.build(), e.example_inputs(), name=name,
                         settings=ProfileSettings(threads=1, repeat=5))


@cluster_app.command("testbed")
def cluster_testbed_cmd(
    model: str = typer.Option("resnet50", "--model", help="zoo model"),
    caps: str = typer.Option("0.5,0.1,0.3,0.2", "--caps", help="one node per fraction of a "
                             "CPU it is held to (unequal nodes), in the order the chain "
                             "baseline keeps"),
    link: str = typer.Option("100mbit,2ms", "--link", help="RATE,DELAY between every pair of "
                             "hosts"),
    frames: int = typer.Option(40, "--frames", min=10, help="frames streamed per plan"),
    method: str = typer.Option("exact", "--method", help="exact, swarm or chain"),
    marginal: bool = typer.Option(False, "--marginal", help="also stream the best plan on the "
                                  "k fastest nodes, k = 2..N-1"),
    latency_cap: Optional[str] = typer.Option(None, "--latency-cap", help="every plan keeps a "
                                              "frame within this (e.g. 150ms); the planner's "
                                              "may divide a stage's frames across its nodes"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the figures as JSON"),
) -> None:
    """Run unequal nodes on this machine (CPU-capped tier servers, a shaping proxy per pair),
    stream frames under the planner's plan, the placement-blind chain and the best single
    node, and print predicted against measured frames per second."""
    from ..planner.scenario import parse_link, parse_seconds
    from ..testbed.cluster import run_cluster_testbed

    try:
        fractions = [float(c) for c in caps.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--caps {caps!r}: give fractions of a CPU like 0.5,0.1,0.3")
    if any(not 0 < c <= 1 for c in fractions):
        raise typer.BadParameter(f"--caps {caps!r}: each fraction must be in (0, 1]")
    try:
        cap = parse_seconds(latency_cap) if latency_cap else None
        _, runs = run_cluster_testbed(model, fractions, parse_link(link), frames, method,
                                      marginal=marginal,
                                      log=lambda t: console.print(f"[dim]{t}[/dim]"),
                                      latency_cap_s=cap)
    except (TiercutError, ValueError) as exc:
        _fail(exc)
    table = Table("plan", "stages", "pred fps", "meas fps", "err", "utilisation",
                  *(("pred ms", "meas ms") if cap else ()),
                  title=f"{model} on {len(fractions)} nodes capped at {caps} CPU, {link}")
    for r in runs:
        table.add_row(r.label, " | ".join(("/" if s.division else "+").join(s.nodes)
                                          for s in r.plan.stages),
                      f"{r.predicted_fps:.2f}", f"{r.measured_fps:.2f}", f"{r.error:+.1%}",
                      ", ".join(f"{n} {u:.2f}" for n, u in sorted(r.utilisation.items())),
                      *((f"{r.plan.latency_s * 1e3:.0f}", f"{r.measured_latency_s * 1e3:.0f}")
                        if cap else ()))
    console.print(table)
    console.print("meas: steady frames per second (between the 20th and 80th percentile of the "
                  "answers); every answer checked against the whole model's")
    if json_path:
        json_path.write_text(json.dumps([{"plan": r.label, "summary": r.plan.summary(),
                                          "predicted_fps": r.predicted_fps,
                                          "measured_fps": r.measured_fps, "error": r.error,
                                          "utilisation": r.utilisation,
                                          "predicted_latency_s": r.plan.latency_s,
                                          "measured_latency_s": r.measured_latency_s}
                                         for r in runs],
                                        indent=1))


@cluster_app.command("discover")
def cluster_discover_cmd(
    wait: str = typer.Option("3s", "--wait", help="how long to browse the LAN, e.g. 3s"),
    model: Optional[str] = typer.Option(None, "--model", help="zoo model to time on each node "
                                        "(against this host's profile of it)"),
    write: Optional[Path] = typer.Option(None, "--write", help="write the cluster YAML here "
                                         "(and its reference profile beside it); needs "
                                         "--model"),
    on: str = typer.Option("", "--on", help="IPv4 addresses of the interfaces to browse on, "
                           "comma-separated (default: all)"),
    name: str = typer.Option("here", "--name", help="this host's node name in the file"),
    as_json: bool = typer.Option(False, "--json", help="print the survey as JSON"),
) -> None:
    """Find the tier servers announced on the LAN (tiercut serve --announce), time MODEL on
    each, measure the links between every two of them and this host, print them, and with
    --write write the cluster file `tiercut cluster plan` reads."""
    from ..discover import BadRecord, browse, cluster_dict, survey
    from ..planner.scenario import ScenarioError, parse_seconds

    try:
        wait_s = parse_seconds(wait)
    except ScenarioError as exc:
        raise typer.BadParameter(f"--wait: {exc}") from None
    if not 0 < wait_s <= 60:
        raise typer.BadParameter(f"--wait {wait!r}: give 0.1s to 60s")
    if write is not None and model is None:
        raise typer.BadParameter("--write needs --model: a cluster file gives each node's "
                                 "speed on a model")
    interfaces = [a.strip() for a in on.split(",") if a.strip()] or None
    log = (lambda t: None) if as_json else (lambda t: console.print(f"[dim]{t}[/dim]"))
    try:
        records, warnings = browse(wait_s, interfaces)
        for w in warnings:
            console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
        if not records:
            console.print(f"[red]error:[/red] no tiercut node announced itself on "
                          f"{', '.join(interfaces or ['any interface'])} within {wait}; start "
                          "them with `tiercut serve --announce` (and check that the LAN passes "
                          "multicast: mDNS is UDP 5353 to 224.0.0.251)", highlight=False)
            raise typer.Exit(1)
        reference = _profiled(model) if model else None
        s = survey(records, model, name, reference, log=log)
        data = cluster_dict(s, f"{write.stem}-reference.json") if write else None
    except BadRecord as exc:  # the discovery errors (SurveyError, LinkError among them)
        _fail(exc)
    if write is not None:
        _write_cluster(write, data, reference)
    for w in s.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if as_json:
        print(json.dumps({**s.to_dict(), "written": str(write) if write else None}, indent=1))
    else:
        _print_survey(s)
        if write is not None:
            console.print(f"wrote {write} and {write.with_name(data['reference'])}; plan on it "
                          f"with: tiercut cluster plan {write} --reference "
                          f"{write.with_name(data['reference'])}", highlight=False)
    if not s.answered:
        raise typer.Exit(1)


def _write_cluster(path: Path, data: dict, reference) -> None:  # noqa: ANN001
    """The YAML and its reference profile, then read back as `cluster plan` will read it."""
    import yaml

    from ..cluster import load_cluster

    reference.save(path.with_name(data["reference"]))
    path.write_text("# written by tiercut cluster discover: speeds are against the reference "
                    "profile,\n# links RATE,DELAY as timed by Probe calls (one direction per "
                    "pair)\n" + yaml.safe_dump(data, sort_keys=False))
    try:
        load_cluster(path)
    except TiercutError as exc:  # a bug here, not the user's: say so plainly
        _fail(f"the cluster file written to {path} does not load: {exc}")


def _print_survey(s) -> None:  # noqa: ANN001
    from ..discover import LinkEstimate

    table = Table("node", "address", "models", "cpus", "memory", "speed" + (
        f" ({s.model})" if s.model else ""), f"link from {s.here}", "status",
        title=f"tiercut nodes found ({len(s.answered)} of {len(s.nodes)} answered)")
    table.add_row(s.here, "(this host)", "", f"{s.here_cpus:g}", f"{s.here_memory >> 20} MiB",
                  "" if s.here_speed is None else f"{s.here_speed:.3f}", "", "lister")
    for n in s.nodes:
        r, link = n.record, s.link(s.here, n.name)
        table.add_row(n.name, r.endpoint, ",".join(r.models), f"{r.cpus:g}",
                      f"{r.memory >> 20} MiB", "" if n.speed is None else f"{n.speed:.3f}",
                      link.text() if isinstance(link, LinkEstimate) else "",
                      n.problem or "ok")
    console.print(table)
    names = [s.here] + [n.name for n in s.answered]
    if len(names) > 2:
        matrix = Table("from \\ to", *names[1:], title="links (rate, one-way delay)")
        for a in names[:-1]:
            cells = []
            for b in names[1:]:
                v = s.links.get((a, b))
                cells.append("" if a == b or v is None else
                             v.text() if isinstance(v, LinkEstimate) else f"failed: {v}")
            matrix.add_row(a, *cells)
        console.print(matrix)
