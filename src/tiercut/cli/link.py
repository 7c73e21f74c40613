"""`tiercut link`: run one emulated link (a shaping TCP proxy) until interrupted."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import TiercutError
from ..link.shaper import ShapingProxy, check_delay, check_rate, parse_address
from ..link.traces import load_trace


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(2)


def link_cmd(
    listen: str = typer.Option("127.0.0.1:0", "--listen",
                               help="HOST:PORT to accept connections on (port 0: any free port)"),
    to: str = typer.Option(..., "--to", help="HOST:PORT to relay each connection to"),
    rate: str = typer.Option("0", "--rate", help="rate each way, like 10mbit (0: unlimited)"),
    delay: str = typer.Option("0ms", "--delay", help="one-way delay, like 20ms"),
    trace: Optional[Path] = typer.Option(None, "--trace",
                                         help="bandwidth trace to replay instead of --rate "
                                              "(pensieve-cooked or G-NetTrack CSV)"),
    trace_scale: float = typer.Option(1.0, "--trace-scale", help="multiply the trace's rates"),
    duration: Optional[float] = typer.Option(None, "--duration",
                                             help="stop after this many seconds"),
) -> None:
    """Relay TCP from --listen to --to through an emulated link (token bucket + delay)."""
    try:
        listen_at, dest = parse_address(listen), parse_address(to)
        rate_bps, delay_s = check_rate(rate), check_delay(delay)
        bw_trace = load_trace(trace) if trace is not None else None
        if duration is not None and not duration > 0:
            raise ValueError(f"--duration must be > 0 seconds, got {duration!r}")
        proxy = ShapingProxy(listen_at, dest, rate_bps, delay_s, bw_trace, trace_scale)
    except (TiercutError, ValueError) as exc:
        _fail(str(exc))
    try:
        asyncio.run(_serve(proxy, duration))
    except KeyboardInterrupt:
        pass
    except OSError as exc:   # e.g. the listen address is taken
        _fail(f"cannot listen on {listen}: {exc.strerror or exc}")


async def _serve(proxy: ShapingProxy, duration: float | None) -> None:
    async with proxy:
        host, port = proxy.address
        shown = (f"trace {proxy.trace.name} (mean {proxy.trace.mean_bps / 1e6:.3g} Mbit/s)"
                 if proxy.trace is not None else
                 f"{proxy.rate_bps / 1e6:g} Mbit/s" if proxy.rate_bps else "unlimited")
        shown_host = f"[{host}]" if ":" in host else host
        print(f"listening on {shown_host}:{port} -> {proxy.to[0]}:{proxy.to[1]}, {shown}, "
              f"delay {proxy.delay_s * 1e3:g} ms", flush=True)
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
