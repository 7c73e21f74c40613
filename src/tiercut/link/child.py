"""Shaping proxies in one child process, for programs whose own CPU time is capped or busy.

A proxy that shares a process with a CPU-capped device (``tiercut.cpucap``), or with a busy
benchmark, would be slowed with it and shape badly; in a child process of its own it keeps
time. Nothing is pickled: the specs go to the child as JSON on its command line.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

from .traces import BandwidthTrace

_CHILD = """
import asyncio, json, sys
from tiercut.link.shaper import ShapingProxy, parse_address
from tiercut.link.traces import BandwidthTrace

async def main():
    proxies = [ShapingProxy(("127.0.0.1", 0), parse_address(s["to"]), s["rate_bps"],
                            s["delay_s"], BandwidthTrace(*s["trace"]) if s["trace"] else None)
               for s in json.loads(sys.argv[1])]
    for p in proxies:
        await p.start()
    print(json.dumps([["%s:%d" % p.address[:2] for p in proxies], proxies[0].started_at]),
          flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    for p in proxies:
        await p.stop()

asyncio.run(main())
"""


@dataclass(frozen=True)
class ProxySpec:
    to: str  # HOST:PORT to relay to
    rate_bps: float | None
    delay_s: float = 0.0
    trace: BandwidthTrace | None = None  # replayed instead of rate_bps when given


@contextlib.contextmanager
def proxies_in_child(specs: Sequence[ProxySpec]) -> Iterator[tuple[list[str], float]]:
    """Start one proxy per spec in a child process; yields the addresses to dial (in order) and
    the moment the proxies started on this machine's monotonic clock (a trace's time 0). The
    child is stopped on exit."""
    payload = [{"to": s.to, "rate_bps": s.rate_bps, "delay_s": s.delay_s,
                "trace": [list(s.trace.times_s), list(s.trace.rates_bps), s.trace.name]
                if s.trace is not None else None} for s in specs]
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(payload)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the link emulator's child process did not start")
        addresses, started = json.loads(line)
        yield addresses, started
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
