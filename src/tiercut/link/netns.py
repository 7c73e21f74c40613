"""A kernel-shaped link between two network namespaces (root only).

    client namespace A                              server namespace B
    10.77.0.1 (veth A) ==== tbf each way ==== 10.77.0.2 (veth B)
                                              delay proxy 10.77.0.2:P --> server 10.77.0.2:S

Both veth ends carry a tbf qdisc at the link rate (egress of A shapes A -> B, egress of B
shapes B -> A). The kernel here has no netem, so a one-way delay is added by a userspace
``ShapingProxy`` (rate unlimited, delay only) run inside B in front of the server port:
``front(S)`` starts it and returns the address clients in A should dial. That proxy ends the
TCP connection, so the client's TCP sees a short round trip and the delay is applied to the
byte stream, not to packets and ACKs: rate and latency are right, TCP's own window dynamics
over a long path are not emulated.

``rate_bps`` is the TCP payload rate by default: tbf counts whole frames, so its rate is raised
by the header share of a full-size frame (66 header bytes per 1448 payload bytes at MTU 1500);
pass ``payload_rate=False`` to set the frame rate as tc would.
"""
from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import select
import sys
from typing import Sequence

from ..errors import TiercutError
from .shaper import check_delay, check_rate

MTU = 1500
FRAME = MTU + 14                 # Ethernet header
MSS = MTU - 20 - 20 - 12         # IPv4, TCP, TCP timestamps
BURST_S = 0.001                  # tbf bucket: about 1 ms at the rate, at least two frames
QUEUE_S = 0.2                    # tbf queue: about 200 ms at the rate, at least 256 KiB
_counter = itertools.count()     # unique names within this process (names also carry the pid)

_PROXY_CODE = ("import typer; from tiercut.cli.link import link_cmd; "
               "typer.run(link_cmd)")


class NamespaceError(TiercutError, RuntimeError):
    """A namespace, veth or qdisc command failed; the message has the command and its output."""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NamespaceError(f"{' '.join(argv)} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
    return proc


@functools.lru_cache(maxsize=1)
def why_unavailable() -> str | None:
    """None when namespace links can run here, else the reason (for pytest.skip)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command (iproute2) is not installed"
    name = f"tiercut-probe-{os.getpid()}"
    try:
        _sh("ip", "netns", "add", name)
    except (NamespaceError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        _sh("tc", "-n", name, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit",
            "burst", "10kb", "limit", "100kb")
    except (NamespaceError, subprocess.TimeoutExpired) as exc:
        return f"tbf does not work here: {exc}"
    finally:
        _sh("ip", "netns", "del", name, check=False)
    return None


def available() -> bool:
    return why_unavailable() is None


def tbf_args(rate_bps: float, payload_rate: bool = True) -> list[str]:
    """The tbf settings for one veth end: rate, a burst of ~1 ms (>= 2 frames) so the rate holds
    over short transfers, and a ~200 ms queue (>= 256 KiB): with 50 ms / 64 KiB the sender's
    own packets were dropped at the qdisc and now and then a 200 ms retransmission timeout
    cut 1 MiB at 10 mbit to 7.8 Mbit/s; with this queue no drops were seen."""
    wire = rate_bps * FRAME / MSS if payload_rate else rate_bps
    burst = max(int(wire / 8 * BURST_S), 2 * FRAME)
    limit = max(int(wire / 8 * QUEUE_S), 256 * 1024)
    return ["tbf", "rate", f"{int(wire)}bit", "burst", str(burst), "limit", str(limit)]


class NamespaceLink:
    """Two namespaces joined by a shaped veth pair; torn down on exit, even on error.

        with NamespaceLink("10mbit", "20ms") as link:
            server = link.python(link.server_ns, SERVER_CODE, "127.0.0.1", "5000")
            host, port = link.front(5000)          # the delayed address, dialled from A
            link.run(link.client_ns, [sys.executable, "client.py", host, str(port)])
    """

    def __init__(self, rate_bps: str | float | None, delay_s: str | float | None = 0.0, *,
                 subnet: int = 77, payload_rate: bool = True) -> None:
        self.rate_bps = check_rate(rate_bps)
        self.delay_s = check_delay(delay_s)
        self.payload_rate = payload_rate
        n = next(_counter)
        self.client_ns, self.server_ns = f"tiercut-{os.getpid()}-{n}-a", f"tiercut-{os.getpid()}-{n}-b"
        short = f"{os.getpid() % 100000}{n % 100}"
        self.client_dev, self.server_dev = f"tcv{short}a", f"tcv{short}b"   # <= 15 chars
        self.client_ip, self.server_ip = f"10.{subnet}.0.1", f"10.{subnet}.0.2"
        self._procs: list[subprocess.Popen] = []
        self._created: list[str] = []

    def __enter__(self) -> "NamespaceLink":
        reason = why_unavailable()
        if reason:
            raise NamespaceError(f"namespace links cannot run here: {reason}")
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _sh("ip", "netns", "add", ns)
            self._created.append(ns)
        _sh("ip", "link", "add", self.client_dev, "netns", self.client_ns, "type", "veth",
            "peer", "name", self.server_dev, "netns", self.server_ns)
        for ns, dev, ip in ((self.client_ns, self.client_dev, self.client_ip),
                            (self.server_ns, self.server_dev, self.server_ip)):
            _sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            _sh("ip", "-n", ns, "link", "set", dev, "mtu", str(MTU), "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            if self.rate_bps is not None:
                _sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "root",
                    *tbf_args(self.rate_bps, self.payload_rate))

    def set_rate(self, rate_bps: str | float | None) -> None:
        """Change both directions' rate now (None or 0 removes the limit)."""
        rate = check_rate(rate_bps)
        for ns, dev in ((self.client_ns, self.client_dev), (self.server_ns, self.server_dev)):
            _sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
            if rate is not None:
                _sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "root",
                    *tbf_args(rate, self.payload_rate))
        self.rate_bps = rate

    def popen(self, ns: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``ns``; it is killed when the link closes."""
        if ns not in (self.client_ns, self.server_ns):
            raise NamespaceError(f"unknown namespace {ns!r}; this link has {self.client_ns!r} "
                                 f"and {self.server_ns!r}")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``ns`` to completion (killed after ``timeout`` seconds)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", ns, *argv], timeout=timeout, **kwargs)

    def python(self, ns: str, code: str, *args: str, **kwargs) -> subprocess.Popen:
        """Start ``python -c code args...`` (this interpreter) inside ``ns``."""
        return self.popen(ns, [sys.executable, "-c", code, *args], **kwargs)

    def front(self, port: int, timeout: float = 30) -> tuple[str, int]:
        """The address clients in the client namespace dial to reach ``port`` of a server in
        the server namespace with this link's delay: a delay-only proxy in the server
        namespace when delay_s > 0, else the port itself. The server must listen on
        ``server_ip`` or 0.0.0.0 (the proxy dials ``server_ip``, which stays on loopback)."""
        if self.delay_s == 0:
            return self.server_ip, port
        proc = self.python(self.server_ns, _PROXY_CODE, "--listen", f"{self.server_ip}:0",
                           "--to", f"{self.server_ip}:{port}", "--rate", "0",
                           "--delay", f"{self.delay_s}s", stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""  # "listening on HOST:PORT ..." comes first
        if not line.startswith("listening on "):
            raise NamespaceError(f"the delay proxy in {self.server_ns} did not start "
                                 f"(exit code {proc.poll()})")
        address = line.split()[2].rstrip(",")
        host, _, p = address.rpartition(":")
        return host, int(p)

    def close(self) -> None:
        """Kill the processes started through this link and delete the namespaces (which
        deletes the veth pair). Processes started some other way are not tracked."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()
        self._procs.clear()
        for ns in self._created:
            _sh("ip", "netns", "del", ns, check=False)
        self._created.clear()
