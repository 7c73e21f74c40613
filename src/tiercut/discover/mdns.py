"""Announcing a tier server on the LAN and browsing for the ones announced, with zeroconf
(python-zeroconf: mDNS / DNS-SD, the protocol printers and AirPlay speakers use).

zeroconf's synchronous API runs its own event loop in its own thread, so the tier server's
event loop never blocks on mDNS (registering probes the name for about a second), and the
lister's command stays plain synchronous code.

Which interfaces: ``interfaces`` is a list of IPv4 addresses of this host's interfaces, or
None for all of them. A server that listens on a loopback address announces on loopback only
unless told otherwise: announcing 127.0.0.1 on the LAN would send every other machine's
lister to itself.
"""
from __future__ import annotations

import ipaddress
import queue
import socket
import threading
import time
from typing import Callable, Iterable, Sequence

from zeroconf import (BadTypeInNameException, InterfaceChoice, IPVersion,
                      NonUniqueNameException, ServiceBrowser, ServiceInfo, ServiceStateChange,
                      Zeroconf)

from .record import SERVICE, BadRecord, NodeRecord, parse

RESOLVE_TIMEOUT_MS = 1500


def _zeroconf(interfaces: Sequence[str] | None) -> Zeroconf:
    for address in interfaces or ():
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise BadRecord(f"interface address {address!r} is not an IPv4 address of this "
                            "host, e.g. 127.0.0.1 or 192.168.1.5") from None
    try:
        return Zeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All,
                        ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise BadRecord(f"cannot open mDNS on {', '.join(interfaces or ['all interfaces'])}: "
                        f"{exc.strerror or exc} (is that an address of this host?)") from None


def announced_addresses(host: str, interfaces: Sequence[str] | None) -> list[str]:
    """The addresses a server listening on ``host`` is reachable at: ``host`` itself, or for
    a wildcard (0.0.0.0) the chosen interfaces' addresses (all of this host's IPv4 ones)."""
    if host not in ("", "0.0.0.0", "::", "[::]"):
        try:
            return [str(ipaddress.IPv4Address(host))]
        except ValueError:
            return [socket.gethostbyname(host)]  # a name that resolves here
    if interfaces:
        return list(interfaces)
    import ifaddr  # zeroconf's own dependency

    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str)]
    outside = [a for a in found if not a.startswith("127.")]
    return outside or found


def default_interfaces(host: str) -> list[str] | None:
    """Loopback only for a server listening on loopback; else all interfaces (None)."""
    try:
        return ["127.0.0.1"] if ipaddress.IPv4Address(host).is_loopback else None
    except ValueError:
        return None


class Announcer:
    """A node's mDNS service, registered in a background thread; ``close()`` unregisters it
    (a goodbye packet: listers drop it at once) and stops mDNS. It also watches the other
    tiercut nodes announced on the same interfaces, so that the server may probe them
    (``known()``: their host:port endpoints)."""

    def __init__(self, interfaces: Sequence[str] | None, log: Callable[[str], None] = print):
        self.interfaces, self.log = interfaces, log
        self.record: NodeRecord | None = None
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._peers: dict[str, str] = {}  # service name -> endpoint
        self._lock = threading.Lock()
        self._todo: queue.Queue[str | None] = queue.Queue()
        self.registered = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tiercut-announce")

    def open(self) -> "Announcer":
        """Open mDNS on the interfaces (before the server listens: a bad address fails the
        command, not a background thread)."""
        self._zc = _zeroconf(self.interfaces)
        return self

    def start(self, record: NodeRecord) -> None:
        """Register ``record`` (once the server listens and its port is known)."""
        record.txt()  # too big for DNS-SD: fails here, in the caller
        self.record = record
        if self._zc is None:
            self.open()
        self._thread.start()

    def known(self) -> list[str]:
        with self._lock:
            return list(self._peers.values())

    def _run(self) -> None:
        r = self.record
        info = ServiceInfo(SERVICE, f"{r.name}.{SERVICE}", port=r.port, properties=r.txt(),
                           parsed_addresses=list(r.addresses), server=f"{r.name}.local.")
        try:
            self._zc.register_service(info)
        except NonUniqueNameException:
            self.log(f"tiercut serve: not announced: node name {r.name!r} is taken on this "
                     "LAN; pick another --node-name")
            return
        except (OSError, BadTypeInNameException, RuntimeError) as exc:
            self.log(f"tiercut serve: not announced: {exc}")
            return
        self._info = info
        self.log(f"tiercut serve: announced {r.name} at {', '.join(r.addresses)}:{r.port} "
                 f"on {', '.join(self.interfaces or ['all interfaces'])}")
        self.registered.set()
        ServiceBrowser(self._zc, SERVICE, handlers=[self._changed])
        while (name := self._todo.get()) is not None:  # resolve off zeroconf's own loop
            self._resolve(name)

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str,
                 state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._peers.pop(name, None)
        else:
            self._todo.put(name)

    def _resolve(self, name: str) -> None:
        zc = self._zc
        if zc is None or name == f"{self.record.name}.{SERVICE}":
            return
        info = zc.get_service_info(SERVICE, name, RESOLVE_TIMEOUT_MS)
        try:
            if info is None:
                raise BadRecord("did not answer")
            record = parse(info.properties, tuple(info.parsed_addresses(IPVersion.V4Only)))
            if not record.addresses:
                raise BadRecord("gave no IPv4 address")
        except BadRecord:
            return  # not a node this server may probe; the lister warns about it
        with self._lock:
            self._peers[name] = record.endpoint

    def close(self) -> None:
        """Unregister and stop; safe to call twice."""
        self._todo.put(None)
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            if self._info is not None:
                zc.unregister_service(self._info)
        finally:
            zc.close()


def browse(wait_s: float, interfaces: Sequence[str] | None = None
           ) -> tuple[list[NodeRecord], list[str]]:
    """The tiercut nodes announced within ``wait_s`` seconds, and a warning per service that
    was skipped (a foreign or malformed announcer, one that did not answer, a name taken
    twice), each naming the service."""
    zc = _zeroconf(interfaces)
    names: list[str] = []
    seen = threading.Lock()

    def changed(zeroconf: Zeroconf, service_type: str, name: str,
                state_change: ServiceStateChange) -> None:
        with seen:
            if state_change is not ServiceStateChange.Removed and name not in names:
                names.append(name)
            elif state_change is ServiceStateChange.Removed and name in names:
                names.remove(name)

    try:
        browser = ServiceBrowser(zc, SERVICE, handlers=[changed])
        time.sleep(wait_s)  # the browse window: answers arrive while this thread waits
        browser.cancel()
        with seen:
            found = list(names)
        return _records(zc, found)
    finally:
        zc.close()


def _records(zc: Zeroconf, names: Iterable[str]) -> tuple[list[NodeRecord], list[str]]:
    records: list[NodeRecord] = []
    warnings: list[str] = []
    for name in names:
        info = zc.get_service_info(SERVICE, name, RESOLVE_TIMEOUT_MS)
        if info is None:
            warnings.append(f"skipped {name}: announced but its record did not arrive within "
                            f"{RESOLVE_TIMEOUT_MS} ms")
            continue
        try:
            record = parse(info.properties, tuple(info.parsed_addresses(IPVersion.V4Only)))
        except BadRecord as exc:
            warnings.append(f"skipped {name}: not a tiercut node's record ({exc})")
            continue
        if not record.addresses:
            warnings.append(f"skipped {name}: its record gave no IPv4 address")
            continue
        if any(r.name == record.name for r in records):
            warnings.append(f"skipped {name}: node name {record.name!r} is announced twice "
                            f"(also at {next(r.endpoint for r in records if r.name == record.name)})")
            continue
        records.append(record)
    return sorted(records, key=lambda r: r.name), warnings
