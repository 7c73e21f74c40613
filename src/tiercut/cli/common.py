"""What the command groups share: the console, the error exit, and parsing and formatting of
small flag values (shapes, KEY=VALUE pairs, counts, byte sizes)."""
from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def _fail(exc: Any) -> None:
    # the message is the user's text (model specs such as pkg.mod:factory, paths): no markup,
    # no :emoji: codes read into it
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, emoji=False)
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


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"{flag} {item!r} must look like KEY=VALUE")
        out.append((key, value))
    return out


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
