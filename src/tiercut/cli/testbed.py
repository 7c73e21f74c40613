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
    dashboard: Optional[str] = DASHBOARD, dashboard_log: Optional[Path] = DASHBOARD_LOG,
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
        feed = open_feed(dashboard, dashboard_log)
        runs = run_testbed(model, settings, requests, budget_s=budget,
                           log=lambda text: console.print(f"[dim]{text}[/dim]"),
                           on_request=feed and _publisher(feed, settings))
    except TiercutError as exc:
        _fail(exc)
    finally:
        if feed:
            feed.close()
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
