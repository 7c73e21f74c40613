"""`tiercut models | profile | show | predict`: the zoo, measuring a model's nodes on this host,
reading a profile back, and predicting one for a host you do not have."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import TiercutError
from .common import _bytes, _fail, _shape, _si, console

INPUT_HELP = ("NAME:SHAPE:DTYPE[:LOW-HIGH], repeatable, one per input in forward's order: "
              "e.g. input_ids:1x16:int64:0-30522 (token ids drawn from [0, 30522)) and "
              "attention_mask:1x16:int64 (ones); dtypes float32, float16, int64, int32, bool")


def models() -> None:
    """List the zoo: name, nodes, parameters, GFLOPs and input shape (each model is traced)."""
    from .. import zoo
    from ..graph.flops import macs
    from ..graph.trace import trace

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


def profile(
    model: str = typer.Argument(..., help="zoo name, or package.module:factory"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the JSON profile"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads"),
    batch: int = typer.Option(1, "--batch", min=1, help="batch size"),
    repeat: int = typer.Option(20, "--repeat", min=1, help="timed runs after warm-up"),
    warmup: int = typer.Option(3, "--warmup", min=0, help="untimed runs first"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape",
                                              help="for module:factory models, e.g. 1,3,224,224"),
    input_flags: list[str] = typer.Option([], "--input", help=INPUT_HELP),
) -> None:
    """Measure every node of MODEL on this host and save a tiercut-profile/1 JSON."""
    from ..measure.profiler import ProfileSettings, profile_graph
    from ..zoo import resolve

    try:
        settings = ProfileSettings(threads=threads, repeat=repeat, warmup=warmup)
        if model.endswith(".onnx"):
            result = _profile_onnx(model, settings,
                                   onnx_shapes(model, input_shape, input_flags))
            result.save(output)
            console.print(f"{model}: {len(result.nodes)} nodes (ONNX Runtime), Σ nodes "
                          f"{result.total_latency_s * 1e3:.2f} ms, whole model "
                          f"{result.model_latency_s * 1e3:.2f} ms, kernels alone "
                          f"{result.settings['kernel_s'] * 1e3:.2f} ms -> {output}",
                          highlight=False)
            return
        entry = resolve(model, _shape(input_shape), input_flags or None)
        net = entry.build()
        inputs = entry.example_inputs(batch)
        graph = traced(net, inputs, model, entry.leaf_modules)
        if graph.dead_removed:
            console.print(f"{model}: {graph.dead_removed} dead nodes (no path to an output) "
                          "removed", highlight=False)
        with Progress(TextColumn("profiling {task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} runs"), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task(model, total=warmup + repeat)
            result = profile_graph(graph, net, inputs, settings,
                                   progress=lambda done, total: bar.update(task, completed=done))
        result.save(output)
    except TiercutError as exc:
        _fail(exc)
    console.print(f"{model}: {len(result.nodes)} nodes, Σ nodes "
                  f"{result.total_latency_s * 1e3:.2f} ms, whole model "
                  f"{result.model_latency_s * 1e3:.2f} ms at {result.settings['threads']} threads "
                  f"-> {output}", emoji=False)


def onnx_shapes(model: str, input_shape, input_flags) -> dict | None:  # noqa: ANN001
    """The input sizes that fix an ONNX file's symbolic dimensions: ``--input NAME:SHAPE:...``
    per input (the dtype is the file's), or ``--input-shape`` for its first input."""
    from ..zoo.registry import parse_input

    shapes = {spec.name: spec.shape for spec in map(parse_input, input_flags or ())}
    if input_shape:
        from ..onnxgraph import load_onnx  # a bad file: OnnxModelError naming it

        first = load_onnx(model).graph.input[0].name
        shapes.setdefault(first, _shape(input_shape))
    return shapes or None


def _profile_onnx(model: str, settings, shapes=None):  # noqa: ANN001, ANN202
    """An ONNX file profiled by ONNX Runtime (tiercut.onnxgraph), with a progress bar."""
    from ..onnxgraph import profile_onnx

    with Progress(TextColumn("profiling {task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} runs"), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task(model, total=settings.warmup + settings.repeat)
        return profile_onnx(model, settings, input_shapes=shapes,
                            progress=lambda done, total: bar.update(task, completed=done))


def traced(net, inputs: tuple, model: str, leaf_modules=()):  # noqa: ANN001, ANN201
    """The Graph of ``net`` on ``inputs``, refused with the names when its forward takes more
    inputs than it is given (an argument left at its default, often one it never reads)."""
    from ..graph.trace import trace

    graph = trace(net, inputs, name=model, leaf_modules=leaf_modules)
    given, extra = graph.inputs[:len(inputs)], graph.inputs[len(inputs):]
    if extra:
        users = graph.consumers()
        unread = [n for n in extra if not users[n]]
        what = (f"{', '.join(map(repr, unread))} never read by forward" if unread else
                f"{', '.join(map(repr, extra))} left at their defaults")
        raise TiercutError(
            f"model {model!r} takes {len(graph.inputs)} inputs ({', '.join(graph.inputs)}) but is "
            f"given {len(inputs)} ({', '.join(given)}, shape "
            f"{'; '.join('x'.join(map(str, t.shape)) for t in inputs)}): {what}; tiercut feeds a "
            "model only the inputs it is given, so remove them from forward or wrap the model in "
            "a module whose forward takes only " + ", ".join(given))
    return graph


def show(
    path: Path = typer.Argument(..., help="a tiercut-profile/1 JSON file"),
    top: int = typer.Option(10, "--top", min=1, help="how many slowest / largest nodes"),
    all_nodes: bool = typer.Option(False, "--all", help="print every node, not only the top"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw latency and size to a PNG"),
) -> None:
    """Print a profile: per-node table, the slowest nodes, the largest outputs."""
    from ..measure.profile import Profile

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
        from ..measure.plot import plot_profile

        plot_profile(prof, plot)
        console.print(f"plot -> {plot}")


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
    input_flags: list[str] = typer.Option([], "--input", help=INPUT_HELP),
) -> None:
    """Write a tiercut-profile/1 for a host you do not have, marked as predicted."""
    from ..measure.predict import LatencyPredictor, scale_profile
    from ..measure.profile import Profile

    if (speed is None) == (fit is None):
        raise typer.BadParameter("give exactly one of --speed (a speed factor) or --fit "
                                 "(profiles measured on the target host)")
    try:
        if source.endswith(".json"):
            base = Profile.load(source)
        else:
            from ..graph.trace import trace
            from ..zoo import resolve

            entry = resolve(source, _shape(input_shape), input_flags or None)
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


def _node_table(title: str, nodes) -> Table:  # noqa: ANN001
    table = Table("node", "op", "latency ms", "± iqr", "output", "MFLOPs", title=title)
    for n in nodes:
        table.add_row(n.name, n.op, f"{n.latency_s * 1e3:.3f}", f"{n.latency_spread_s * 1e3:.3f}",
                      _bytes(n.output_bytes), f"{n.flops / 1e6:.1f}")
    return table
