"""Keep freed tensor memory in the process instead of returning it to the OS.

glibc serves allocations above a threshold (128 KiB, adapting upward) with fresh mmap()s and
returns them on free, so a model whose activations are a few hundred KiB pays a page fault per
touched page on every op. Which tensors hit that path depends on the order in which they are
freed, so the same ops ran 20-30% slower in one calling pattern than in another here. Raising
the mmap and trim thresholds makes op timings depend on the op, not on the caller, and makes
inference faster; profiles and tier servers both run with it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: above any single activation of the zoo's models


@functools.cache
def keep_freed_memory() -> bool:
    """Returns True when the allocator was tuned (glibc), False elsewhere (a no-op)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
