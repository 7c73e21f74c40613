"""A run's events as JSON lines: ``EventLog`` writes them as they are published,
``read_events`` checks them back, and ``replay`` publishes them again at their pace
(``tiercut dashboard --replay FILE``)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .events import EventError, check


class EventLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w")

    def publish(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()  # a run stopped with Ctrl-C keeps what it wrote

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of a log written by EventLog; EventError names the line that is not one."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise EventError(f"event log {str(path)!r}: {exc.strerror}") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(check(json.loads(line)))
        except (ValueError, RecursionError) as exc:  # EventError is a ValueError too
            raise EventError(f"{path}:{number}: {exc}") from None
    return events


def replay(events: Iterable[dict[str, Any]], publish: Callable[[dict[str, Any]], Any],
           speed: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> int:
    """Publish ``events`` with the gaps between their ``t`` divided by ``speed``; returns how
    many were published."""
    if not speed > 0:
        raise EventError(f"replay speed {speed!r} must be > 0 (2: twice as fast)")
    count, last = 0, None
    for event in events:
        if last is not None and event["t"] > last:
            sleep((event["t"] - last) / speed)
        last = event["t"]
        publish(event)
        count += 1
    return count
