"""A real CPU cap on a process (a cgroup CPU quota): how one machine plays a slower device.

A cap of 0.1 lets the process run 10% of one CPU's time in every scheduling period, so
single-threaded work takes about ten times as long, as on a host ten times slower. It is
the kernel's CFS bandwidth control (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), not a
sleep: the work really runs, only less often. Needs root and a writable cgroup file system;
``available()`` says whether this machine allows it.

A cap can also hold single threads of a process (``add_thread``, ``capped_executor``): the
device's compute then runs at the cap while its networking does not, as on a phone whose
slow cores run the model while another core serves its sockets.

``pin`` is the other half of playing several hosts on one machine: each host's process on its
own cores (CPU affinity; no root needed), so that hosts do not take turns on one core and
evict each other's caches, as two machines would not.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
from pathlib import Path

from ..errors import TiercutError

PERIOD_US = 10_000  # short periods keep a capped stage's latency smooth
_V2 = Path("/sys/fs/cgroup")
_V1 = Path("/sys/fs/cgroup/cpu")
_names = itertools.count()


class CpuCapError(TiercutError, RuntimeError):
    """The machine does not allow a CPU cap (not root, or no cgroup CPU controller)."""


def _root() -> tuple[Path, int] | None:
    if (_V2 / "cgroup.controllers").exists() and "cpu" in (_V2 / "cgroup.controllers").read_text().split():
        return _V2, 2
    if (_V1 / "cpu.cfs_quota_us").exists():
        return _V1, 1
    return None


def available() -> bool:
    root = _root()
    return root is not None and os.geteuid() == 0 and os.access(root[0], os.W_OK)


class CpuCap:
    """``with CpuCap(0.1) as cap: cap.add(pid)``: the processes added run at ``fraction`` of
    one CPU until the block ends (then they return to the root group)."""

    def __init__(self, fraction: float, period_us: int = PERIOD_US) -> None:
        if not 0 < fraction <= 64:
            raise CpuCapError(f"CPU cap {fraction!r} must be a fraction of one CPU in (0, 64]")
        self.fraction, self.period_us = fraction, period_us
        self.path: Path | None = None

    def __enter__(self) -> "CpuCap":
        root = _root()
        if root is None or not available():
            raise CpuCapError("a CPU cap needs root and a cgroup CPU controller "
                              "(/sys/fs/cgroup cpu.max or cpu/cpu.cfs_quota_us)")
        base, version = root
        self.path = base / f"tiercut-{os.getpid()}-{next(_names)}"
        self.path.mkdir()
        quota = max(1000, round(self.fraction * self.period_us))  # the kernel's minimum: 1 ms
        period = self.period_us if quota == round(self.fraction * self.period_us) else \
            round(quota / self.fraction)
        if version == 2:
            (self.path / "cpu.max").write_text(f"{quota} {period}")
        else:
            (self.path / "cpu.cfs_period_us").write_text(str(period))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        self._root, self._version = base, version
        return self

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) under the cap."""
        assert self.path is not None, "use CpuCap as a context manager"
        (self.path / "cgroup.procs").write_text(str(pid))

    def add_thread(self, tid: int) -> None:
        """Move one thread (its kernel id: ``threading.get_native_id()``) under the cap; the
        other threads of its process stay where they are. cgroup v1 moves single threads as
        they are; v2 only within a threaded subtree, which this cap's group becomes."""
        assert self.path is not None, "use CpuCap as a context manager"
        try:
            if self._version == 1:
                (self.path / "tasks").write_text(str(tid))
                return
            if (self.path / "cgroup.type").read_text().strip() != "threaded":
                (self.path / "cgroup.type").write_text("threaded")
            (self.path / "cgroup.threads").write_text(str(tid))
        except OSError as exc:
            raise CpuCapError(f"cannot move thread {tid} under the cap {self.path}: {exc} "
                              "(cgroup v2 moves a thread only within its process's threaded "
                              "subtree)") from None

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        try:
            # a thread added alone goes back alone (v2's threaded groups list threads)
            threaded = self._version == 2 and \
                (self.path / "cgroup.type").read_text().strip() == "threaded"
            kind = "cgroup.threads" if threaded else "cgroup.procs"
            for pid in (self.path / kind).read_text().split():
                try:
                    (self._root / kind).write_text(pid)
                except OSError:
                    pass  # it exited meanwhile
            self.path.rmdir()
        finally:
            self.path = None


def capped_executor(cap: CpuCap, workers: int = 1) -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool whose threads run under ``cap`` (each moves itself there as it starts):
    hand it to ``SplitClient(device_executor=...)`` to cap the device's compute alone."""
    return concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix="tiercut-capped",
        initializer=lambda: cap.add_thread(threading.get_native_id()))


def parse_cpus(text: str) -> frozenset[int]:
    """``"1"``, ``"0,2"``, ``"0-3,6"`` -> the CPU numbers; CpuCapError names a bad part."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise CpuCapError(f"CPU list {text!r}: {part.strip()!r} is not a CPU number or a "
                              "range; give e.g. 1, 0,2 or 0-3") from None
        if first < 0 or last < first:
            raise CpuCapError(f"CPU list {text!r}: {part.strip()!r} is not a range of CPU "
                              "numbers >= 0 (low-high)")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def pin(pid: int, cpus: "set[int] | frozenset[int]") -> None:
    """Run every thread of process ``pid`` on ``cpus`` only; threads it starts later inherit
    the set of the thread that starts them. Linux (sched_setaffinity on each thread)."""
    count = os.cpu_count() or 1
    bad = sorted(c for c in cpus if not 0 <= c < count)
    if not cpus or bad:
        raise CpuCapError(f"CPUs {sorted(cpus) if not bad else bad} do not exist here; "
                          f"this machine has CPUs 0-{count - 1}")
    if not hasattr(os, "sched_setaffinity"):
        raise CpuCapError("pinning a process to CPUs needs Linux (sched_setaffinity)")
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError as exc:
        raise CpuCapError(f"cannot list the threads of process {pid}: {exc}") from None
    for tid in threads:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # the thread ended meanwhile
        except OSError as exc:  # e.g. none of the CPUs allowed to this process
            raise CpuCapError(f"cannot pin thread {tid} of process {pid} to CPUs "
                              f"{sorted(cpus)}: {exc}") from None
