"""Descriptor 1 pointed at the null device while a C library runs, so that what it printf()s
does not reach a caller's stdout (``tiercut plan --json``)."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys


@contextlib.contextmanager
def quiet_stdout():
    """HiGHS 1.12 printf()s a debug line ("HighsMipSolverData::transformNewIntegerFeasible
    Solution tmpSolver.run();") on some solves, straight to file descriptor 1, where it would
    land in the middle of ``tiercut plan --json``. Point descriptor 1 at the null device
    while HiGHS runs, flushing C's buffer before it is put back."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield  # no descriptor 1 to guard
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        _flush_c_stdout()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to reach this way (Windows)
        return None


def _flush_c_stdout() -> None:
    libc = _libc()
    if libc is not None:
        libc.fflush(None)

