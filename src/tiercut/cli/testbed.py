"""`tiercut testbed`: plan here, run each plan for real across tier servers behind emulated
links, and print predicted against measured latency."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import TiercutError
from .common import _fail, _pairs, console
from .dashboard import DASHBOARD, DASHBOARD_LOG, open_feed


def _publisher(feed: Any, settings: list) -> Any:
    """The testbed's requests on the live view: each plan under its setting and label, and the
    setting's emulated rate as the bandwidth (the testbed estimates none)."""
    rates, shown = {s.name: s.rate_bps for s in settings}, []

    def on_request(setting: str, label: str, plan: Any, m: Any) -> None:
        if shown != [setting]:
            shown[:] = [setting]
            feed.estimate(rates[setting], f"{setting} link, emulated")
        feed.request(m, feed.plan(plan, f"{setting} {label}"))

    return on_request


def _joint(model: str, codecs: Optional[Path], max_loss: float,
           private_input: Optional[str]) -> tuple[Any, Any]:
    """The codec plans' setup and a real request from the model's data (None, None without
    --codecs); refused before any server starts."""
    if codecs is None:
        from ..planner.privacy import PrivateInputError

        if private_input is not None:
            raise PrivateInputError(f"--private-input {private_input} on testbed needs --codecs "
                                    "FILE (a codec table from `tiercut calibrate`)")
        return None, None
    from ..codecs.calibrate import CalibrationError, CodecTable
    from ..planner import Constraints
    from ..planner.privacy import parse_private
    from ..testbed.joint import JointSetup
    from ..zoo import entry

    table = CodecTable.load(codecs)
    if table.model != model:
        raise CalibrationError(f"codec table {codecs} is for model {table.model!r}, not --model "
                           f"{model!r}; calibrate it with `tiercut calibrate --model {model}`")
    private = None if private_input is None else parse_private(private_input)
    setup = JointSetup(table, max_loss, Constraints(private_input=private))
    return setup, request_for(entry(model))


def request_for(zoo: Any) -> Any:
    """A real request where the model has real data (a held-out digit, a sentence), else the
    zoo's example input."""
    from .calibrate import load_dataset

    data = {"digits_cnn": "digits", "minilm_l6": "sentences"}.get(zoo.name)
    if data is None:
        return None
    inputs, _ = load_dataset(data, zoo)
    return tuple(t[-1:] for t in inputs)  # the last sample: past the usual --samples N


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
    codecs: Optional[Path] = typer.Option(None, "--codecs", help="a tiercut-codecs/1 table "
                                          "(`tiercut calibrate`): measure all-device, input to "
                                          "cloud, the best lossless split and the joint "
                                          "cut+codec plan instead"),
    max_loss: float = typer.Option(0.01, "--max-loss", help="with --codecs: the largest "
                                   "calibrated loss a codec may have (top-1: a fraction; "
                                   "cosine: 1 - cos)"),
    private_input: Optional[str] = typer.Option(None, "--private-input", help="with --codecs: "
                                                "N or NODE, the input and the first N nodes (or "
                                                "those up to NODE) stay on the device"),
    dashboard: Optional[str] = DASHBOARD, dashboard_log: Optional[Path] = DASHBOARD_LOG,
    divide: Optional[int] = typer.Option(None, "--divide", min=2, help="N: N edge servers on "
                                         "an emulated LAN (--lan); the planner may tile one run "
                                         "of layers across them: all-device, the best undivided "
                                         "plan and the divided one are measured (first "
                                         "--setting, default Wi-Fi-like 100mbit,5ms)"),
    lan: str = typer.Option("100mbit,1ms", "--lan", help="with --divide: RATE,DELAY between "
                            "edge servers"),
) -> None:
    """Plan device/edge/cloud here, run each plan for real across tier servers behind emulated
    links, and print predicted against measured latency next to the baselines."""
    import json as _json

    from ..planner.scenario import parse_link
    from ..testbed import SETTINGS, Setting, plot, report, run_testbed

    feed = None
    try:
        settings = [Setting(name, (link := parse_link(value)).bandwidth_bps, link.latency_s)
                    for name, value in _pairs(setting, "--setting")] or list(SETTINGS)
        if divide is not None:
            _divided(model, divide, settings[0] if setting else None, parse_link(lan),
                     requests, json_path)
            return
        joint, inputs = _joint(model, codecs, max_loss, private_input)
        feed = open_feed(dashboard, dashboard_log)
        runs = run_testbed(model, settings, requests, budget_s=budget,
                           log=lambda text: console.print(f"[dim]{text}[/dim]"),
                           on_request=feed and _publisher(feed, settings), joint=joint,
                           inputs=inputs)
    except TiercutError as exc:
        _fail(exc)
    finally:
        if feed:
            feed.close()
    if joint is not None:
        _print_joint(model, runs, joint, plot_path, json_path)
        return
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


def _print_joint(model: str, runs: list, joint: Any, plot_path: Optional[Path],
                 json_path: Optional[Path]) -> None:
    """The four codec plans per setting: predicted against measured, bytes, codec and loss."""
    import json as _json

    from rich import box

    from ..testbed.joint import rows as joint_rows, verdict

    rows = joint_rows(runs)
    metric = joint.table.metric
    private = joint.constraints.private_input
    short = {"all-device": "device", "input to cloud": "to cloud",
             "best lossless split": "lossless", "joint": "joint"}
    table = Table("link", "plan", "placement", "pred", "meas", "err", "sent B", "codec",
                  "loss cal/run", box=box.SIMPLE, pad_edge=False,
                  padding=(0, 1, 0, 0), title=f"{model}: baselines against the joint cut+codec "
                  f"plan ({metric} loss <= {joint.max_loss:g}"
                  + (f", private input {private})" if private is not None else ")"))
    for r in rows:
        codec = r["codec"] + ("@" + r["cut"].split()[1] if r["cut"] else "")
        table.add_row(r["setting"], short[r["label"]] + ("" if r["private"] else "*"),
                      r["placement"], f"{r['predicted_ms']:.1f}", f"{r['measured_ms']:.1f}",
                      f"{r['error']:+.1%}", f"{r['measured_bytes']}", codec,
                      f"{r['calibrated_loss']:.4f}/{r['seen_loss']:.4f}")
    if any(r["cut"] for r in rows):
        console.print("codec cuts: " + "; ".join(dict.fromkeys(
            f"{r['codec']} @{r['cut']}" for r in rows if r["cut"])))
    console.print(table)
    console.print("ms, median of each plan's requests; sent B: bytes the device sent on the first hop, as "
                  "measured; *: breaks the private input; loss: the table's calibrated loss / the largest seen at run time "
                  "against the whole model's answer (lossless plans: bit-exact)")
    for name in dict.fromkeys(r["setting"] for r in rows):
        console.print(f"{name}: " + verdict([r for r in rows if r["setting"] == name]))
    if plot_path:
        from ..testbed.joint import plot

        plot(rows, plot_path, f"{model}: baselines against the joint plan per link setting")
        console.print(f"plot -> {plot_path}")
    if json_path:
        json_path.write_text(_json.dumps({"model": model, "rows": rows}, indent=1))


def _divided(model: str, nodes: int, setting: Any, lan: Any, requests: int,
             json_path: Optional[Path]) -> None:
    """``testbed --divide N``: a run of layers tiled across N edge servers, measured."""
    import json as _json

    from ..testbed.divided import report as divided_report
    from ..testbed.divided import run_divided_testbed

    kwargs = {"setting": setting} if setting is not None else {}
    bed = run_divided_testbed(model, nodes, lan=lan, requests=requests,
                              log=lambda text: console.print(f"[dim]{text}[/dim]"), **kwargs)
    data = divided_report(bed)
    table = Table("plan", "placement", "pred ms", "meas ms", "err", "edge compute ms",
                  title=f"{model}: one run divided across {nodes} edge servers "
                        f"({bed.setting.name} to the edge), predicted against measured")
    for r in data["rows"]:
        table.add_row(r["plan"], r["placement"], f"{r['predicted_ms']:.1f}",
                      f"{r['measured_ms']:.1f}", f"{r['error']:+.1%}", f"{r['server_ms']:.1f}")
    console.print(table)
    div = data["division"]
    if div:
        console.print(f"divided {div['first']} .. {div['last']} from {div['coordinator']} across "
                      f"{', '.join(div['hosts'])} (row bounds {div['row_bounds']}); speed-up "
                      f"over the best undivided plan: predicted {data['speedup_predicted']:.2f}x, "
                      f"measured {data['speedup_measured']:.2f}x")
    if json_path:
        json_path.write_text(_json.dumps(data, indent=1))
