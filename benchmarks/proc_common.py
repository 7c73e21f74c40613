"""What the runtime benchmarks share: a process's resident memory, read from /proc."""
from __future__ import annotations


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (0 where /proc does not say)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
