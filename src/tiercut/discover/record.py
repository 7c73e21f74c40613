"""What a node says about itself in its mDNS TXT record, and how this host measures the same.

The record is a few ``key=value`` strings (each at most 255 bytes, DNS-SD's limit). A record
from the network is untrusted text: ``parse`` checks every field and raises ``BadRecord``
naming the field and what it accepts, so that the browser can skip a foreign announcer with a
warning instead of failing on it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TiercutError

SERVICE = "_tiercut._tcp.local."
SCHEMA = "1"  # bumped if the keys change meaning; a record of another schema is skipped
MAX_TXT = 255
MAX_NAME = 63  # a DNS label


class BadRecord(TiercutError, ValueError):
    """A TXT record that is not a tiercut node's (or not of a schema this version reads)."""


@dataclass(frozen=True)
class NodeRecord:
    name: str
    port: int
    models: tuple[str, ...]
    cpus: float
    memory: int  # bytes available to the node's server
    version: str
    addresses: tuple[str, ...] = field(default=())  # from the mDNS A records, not the TXT

    @property
    def endpoint(self) -> str:
        return f"{self.addresses[0]}:{self.port}" if self.addresses else ""

    def txt(self) -> dict[str, str]:
        props = {"schema": SCHEMA, "name": self.name, "port": str(self.port),
                 "models": ",".join(self.models), "cpus": f"{self.cpus:g}",
                 "memory": str(self.memory), "version": self.version}
        for key, value in props.items():
            if len(key) + 1 + len(value.encode()) > MAX_TXT:
                raise BadRecord(f"TXT {key}={value[:40]}... is over DNS-SD's {MAX_TXT} bytes "
                                "for one entry; host fewer models on an announced server")
        return props


def check_name(name: str) -> str:
    # no '-': a cluster file's link keys are 'A-B'
    ok = 0 < len(name) <= MAX_NAME and all(c.isascii() and (c.isalnum() or c == "_")
                                           for c in name)
    if not ok:
        raise BadRecord(f"node name {name!r}: give 1 to {MAX_NAME} ASCII letters, digits or "
                        "'_' (no '-': cluster link keys are 'A-B')")
    return name


def tiercut_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tiercut")
    except PackageNotFoundError:
        return "unknown"


def default_name(port: int) -> str:
    """This host's name and the port, made a valid node name: ``rpi4_50051``."""
    import socket

    host = "".join(c if c.isascii() and c.isalnum() else "_"
                   for c in socket.gethostname().split(".")[0]) or "node"
    return f"{host[:MAX_NAME - 6]}_{port}"


def parse(properties: dict, addresses: tuple[str, ...] = ()) -> NodeRecord:
    """A NodeRecord from zeroconf's properties (bytes keys and values, or None values)."""
    props = {}
    for k, v in properties.items():
        try:
            key = k.decode() if isinstance(k, bytes) else str(k)
            props[key] = v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))
        except UnicodeDecodeError:
            raise BadRecord(f"TXT entry {k!r} is not UTF-8 text") from None
    if props.get("schema") != SCHEMA:
        raise BadRecord(f"TXT schema={props.get('schema')!r}; this tiercut reads schema "
                        f"{SCHEMA!r}")
    missing = [k for k in ("name", "port", "models", "cpus", "memory", "version")
               if k not in props]
    if missing:
        raise BadRecord(f"TXT lacks {', '.join(missing)}")
    name = check_name(props["name"])
    port = _number(props, "port", int, "a TCP port 1..65535")
    if not 0 < port < 65536:
        raise BadRecord(f"TXT port={props['port']!r} is not a TCP port 1..65535")
    cpus = _number(props, "cpus", float, "a number of CPUs > 0")
    memory = _number(props, "memory", int, "bytes >= 0")
    if not cpus > 0 or memory < 0:
        raise BadRecord(f"TXT cpus={props['cpus']!r} memory={props['memory']!r}: cpus must be "
                        "> 0 and memory bytes >= 0")
    models = tuple(m for m in props["models"].split(",") if m)
    if not models:
        raise BadRecord("TXT models is empty; a tier server hosts at least one model")
    return NodeRecord(name, port, models, cpus, memory, props["version"], tuple(addresses))


def _number(props: dict[str, str], key: str, kind: type, accepted: str):  # noqa: ANN202
    try:
        value = kind(props[key])
    except ValueError:
        raise BadRecord(f"TXT {key}={props[key]!r} is not {accepted}") from None
    if kind is float and value != value:  # NaN
        raise BadRecord(f"TXT {key}={props[key]!r} is not {accepted}")
    return value


# --- this host's own figures --------------------------------------------------------------

def available_cpus() -> float:
    """CPUs this process may use: its affinity (``serve --cpus``), held to the cgroup's CPU
    quota when that is lower (a container given 1.5 CPUs of 8 says 1.5)."""
    n = float(len(os.sched_getaffinity(0)))
    quota = _cgroup_value("cpu.max", lambda t: (None if t.split()[0] == "max" else
                                                int(t.split()[0]) / int(t.split()[1])))
    return min(n, quota) if quota else n


def available_memory() -> int:
    """Bytes this process may use: the cgroup memory limit (the tightest of its cgroup and
    the cgroups above it) when there is one, else the kernel's MemAvailable."""
    mem_available = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                mem_available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = _cgroup_value("memory.max", lambda t: None if t == "max" else int(t))
    if limit is None:  # cgroup v1
        v1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        try:
            value = int(v1.read_text())
            limit = value if value < 1 << 60 else None  # "no limit" is a huge number
        except (OSError, ValueError):
            pass
    if limit is None:
        return mem_available
    return min(limit, mem_available) if mem_available else limit


def _cgroup_value(filename: str, parse_text):  # noqa: ANN001, ANN202
    """The tightest value of cgroup v2 file ``filename`` on the way from this process's
    cgroup up to the root (None: no limit, or no cgroup v2)."""
    try:
        rel = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    best = None
    path = Path("/sys/fs/cgroup") / rel.strip().lstrip("/")
    while True:
        try:
            value = parse_text((path / filename).read_text().strip())
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            value = None
        if value is not None:
            best = value if best is None else min(best, value)
        if path == Path("/sys/fs/cgroup"):
            return best
        path = path.parent
