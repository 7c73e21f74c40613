"""The ways to run a tier server: ``ServerThread`` / ``serve_in_thread`` on an event loop in a
daemon thread (tests, benchmarks), ``spawn`` / ``ServerProcess`` as ``tiercut serve`` in a child
process, and ``serve_forever`` until SIGTERM or SIGINT (what ``tiercut serve`` runs)."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .server import TierServer


class ServerThread:
    """A TierServer on its own event loop in a daemon thread: ``.endpoint``, ``.stop(grace)``."""

    def __init__(self, server: TierServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"tiercut-server-{id(self):x}")
        self._thread.start()
        self.endpoint = self._call(server.start())

    def _call(self, coro: Any, timeout: float | None = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float | None = 5.0) -> None:
        if not self._loop.is_running():
            return
        self._call(self.server.stop(grace), timeout=None if grace is None else grace + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(0)


def serve_in_thread(models: Sequence[str], **kwargs: Any) -> ServerThread:
    return ServerThread(TierServer(models, **kwargs))


@dataclass
class ServerProcess:
    """``tiercut serve`` in a child process (``python -m tiercut.cli.serve serve``)."""

    process: subprocess.Popen
    endpoint: str
    log: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the server drains its requests in flight and exits."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def spawn(models: Sequence[str], threads: int | None = 1, host: str = "127.0.0.1",
          extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
          timeout: float = 60, cpus: Sequence[int] | None = None,
          port: int = 0) -> ServerProcess:
    """Start a tier server in a child process on ``port`` (0: a free one); wait until it
    listens. ``cpus``: the CPUs it runs on (``serve --cpus``)."""
    cmd = [sys.executable, "-m", "tiercut.cli.serve", "serve", "--host", host, "--port", str(port),
           "--models", ",".join(models), *extra_args]
    if threads:
        cmd += ["--threads", str(threads)]
    if cpus is not None:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    log: list[str] = []
    deadline = time.monotonic() + timeout
    endpoint = ""

    def read() -> None:
        nonlocal endpoint
        for line in proc.stdout:  # type: ignore[union-attr]
            log.append(line.rstrip())
            found = re.search(r"listening on (\S+:\d+)", line)
            if found and not endpoint:
                endpoint = found.group(1)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not endpoint:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tier server did not start: {' | '.join(log[-20:])}")
        time.sleep(0.02)
    return ServerProcess(proc, endpoint, log)


# --- `tiercut serve` ---------------------------------------------------------------------------

def serve_forever(server: TierServer, on_start: Callable[[str], None] = print,
                  on_stop: Callable[[], None] | None = None) -> None:
    """Run ``server`` until SIGTERM or SIGINT, then drain requests in flight and exit.
    ``on_stop`` runs first (off the event loop): e.g. withdraw the server's mDNS announcement,
    so that nobody finds it while it drains."""

    async def main() -> None:
        endpoint = await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        on_start(endpoint)
        await stop.wait()
        if on_stop is not None:
            await loop.run_in_executor(None, on_stop)
        await server.stop(grace=30)

    asyncio.run(main())
