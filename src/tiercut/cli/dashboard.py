"""``tiercut dashboard --replay FILE``: the live view of a recorded run, and what the commands
that take ``--dashboard PORT`` and ``--dashboard-log FILE`` (bench, testbed) share.

Why a replay and not a demo run: the live view of a real run is ``--dashboard PORT`` on the
command that runs it; what a user wants from the command on its own is to look at such a run
again, later or on another screen, at its own pace.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import TiercutError
from .common import _fail, console

DASHBOARD = typer.Option(None, "--dashboard", metavar="PORT", help="serve a live view of the "
                         "run at http://127.0.0.1:PORT/ (0 picks a free port; this machine "
                         "only: the page shows your model and plans)")
DASHBOARD_LOG = typer.Option(None, "--dashboard-log", metavar="FILE", help="write the live "
                             "view's events as JSON lines, for tiercut dashboard --replay")


def open_feed(port: Optional[str], log_path: Optional[Path]) -> Any:
    """The run's Feed (None without either flag); a bad or busy port exits with 2."""
    if port is None and log_path is None:
        return None
    from ..dashboard import DashboardError, Feed

    try:
        return Feed.open(port, log_path, say=lambda text: console.print(text, highlight=False))
    except DashboardError as exc:
        raise typer.BadParameter(f"--dashboard: {exc}") from None


def dashboard_cmd(
    replay: Path = typer.Option(..., "--replay", metavar="FILE", help="events written by "
                                "--dashboard-log (tiercut bench, tiercut testbed)"),
    port: str = typer.Option("0", "--port", help="port on 127.0.0.1 (0 picks a free one); "
                             "this machine only: the page shows your model and plans"),
    speed: float = typer.Option(1.0, "--speed", help="replay this many times faster than the "
                                "run went (0 or less: not accepted)"),
    keep: bool = typer.Option(True, "--keep/--exit", help="keep serving after the replay "
                              "until Ctrl-C (--exit: stop at its end)"),
) -> None:
    """Serve the live view of a recorded run and replay its events at their pace."""
    from ..dashboard import Dashboard, DashboardError, read_events
    from ..dashboard import replay as replay_events

    try:
        events = read_events(replay)
        if not speed > 0:
            raise typer.BadParameter(f"--speed {speed!r} must be > 0 (2: twice as fast)")
        board = Dashboard()
        url = board.start(port)
    except DashboardError as exc:
        raise typer.BadParameter(f"--port: {exc}") from None
    except TiercutError as exc:
        _fail(exc)
    console.print(f"dashboard: {url} (this machine only); replaying {len(events)} events "
                  f"from {replay}", highlight=False)
    try:
        replay_events(events, board.publish, speed)
        console.print("replay done" + ("; Ctrl-C to stop" if keep else ""), highlight=False)
        while keep:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
