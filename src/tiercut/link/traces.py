"""Bandwidth traces: a rate that changes over time, read from public trace files.

Three formats are read (``load_trace`` tells them apart by the first line):

- **pensieve-cooked**: one sample a line, ``<seconds since start><TAB or spaces><Mbit/s>``,
  LF or CRLF line endings (the Pensieve / Comyco ``cooked_traces``).
- **G-NetTrack CSV** (the Irish 5G dataset): a header line with ``Timestamp``,
  ``DL_bitrate`` and ``UL_bitrate``; timestamps like ``2019.12.14_10.16.30``, bitrates in
  kbit/s. Rows that share a (whole-second) timestamp are spread evenly over that second. A
  ``-`` (missing value) row is skipped, which under piecewise-constant replay is the
  same as carrying the last value forward until the next measured row; missing rows before the
  first measurement are dropped and the trace starts at the first measured row.
- **mahimahi** packet-delivery traces: one integer millisecond timestamp a line, each line one
  opportunity to deliver a 1500-byte packet (several lines may share a millisecond). The
  opportunities are counted in bins of ``MAHIMAHI_BIN_S`` and each bin becomes one sample of
  ``count × 1500 × 8 / bin`` bit/s; like mahimahi, the trace loops after its last timestamp.

A trace is piecewise constant: sample ``i`` holds from ``times_s[i]`` until ``times_s[i + 1]``,
the last sample holds for as long as the gap before it (1 s for a one-sample trace), and then
the trace loops.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..errors import TiercutError

FORMATS = ("pensieve-cooked ('<seconds>\\t<Mbit/s>' per line)",
           "G-NetTrack CSV (header with Timestamp, DL_bitrate, UL_bitrate in kbit/s)",
           "mahimahi (one integer millisecond timestamp per 1500-byte delivery per line)")
MAHIMAHI_BIN_S = 0.1  # seconds of delivery opportunities counted into one sample
MAHIMAHI_PACKET_BITS = 1500 * 8


class BandwidthTraceError(TiercutError, ValueError):
    """A bandwidth trace that breaks an invariant (no samples, negative rate, time going back)."""


class TraceFileError(TiercutError, ValueError):
    """A trace file that cannot be read; the message names the file, line and bad value."""


@dataclass(frozen=True)
class BandwidthTrace:
    times_s: tuple[float, ...]   # sample start times, non-decreasing, times_s[0] == 0
    rates_bps: tuple[float, ...]  # bit/s, >= 0
    name: str = "trace"

    def __post_init__(self) -> None:
        object.__setattr__(self, "times_s", tuple(float(t) for t in self.times_s))
        object.__setattr__(self, "rates_bps", tuple(float(r) for r in self.rates_bps))
        if not self.times_s:
            raise BandwidthTraceError(f"trace {self.name!r} has no samples")
        if len(self.times_s) != len(self.rates_bps):
            raise BandwidthTraceError(f"trace {self.name!r}: {len(self.times_s)} times but "
                                      f"{len(self.rates_bps)} rates")
        if self.times_s[0] != 0.0:
            raise BandwidthTraceError(f"trace {self.name!r} must start at time 0, starts at "
                                      f"{self.times_s[0]!r} (use BandwidthTrace.from_samples)")
        for i, (t, r) in enumerate(zip(self.times_s, self.rates_bps)):
            if not math.isfinite(t) or (i and t < self.times_s[i - 1]):
                raise BandwidthTraceError(f"trace {self.name!r}: sample {i} time {t!r} is not "
                                          "finite and non-decreasing")
            if not (math.isfinite(r) and r >= 0):
                raise BandwidthTraceError(f"trace {self.name!r}: sample {i} rate {r!r} bit/s "
                                          "must be a finite number >= 0")

    @classmethod
    def from_samples(cls, times_s, rates_bps, name: str = "trace") -> "BandwidthTrace":
        """A trace from samples whose first time need not be 0 (it is shifted to 0)."""
        times = [float(t) for t in times_s]
        t0 = times[0] if times else 0.0
        return cls(tuple(t - t0 for t in times), tuple(rates_bps), name)

    @property
    def duration_s(self) -> float:
        """Length of one loop: the last sample holds as long as the gap before it."""
        t = self.times_s
        last_gap = t[-1] - t[-2] if len(t) > 1 else 1.0
        return t[-1] + (last_gap if last_gap > 0 else 1.0)

    def rate_at(self, t: float) -> float:
        """The rate (bit/s) at ``t`` seconds after the start, looping past the end."""
        t = math.fmod(max(t, 0.0), self.duration_s)
        return self.rates_bps[bisect.bisect_right(self.times_s, t) - 1]

    def mean_over(self, t0: float, t1: float) -> float:
        """Time-weighted mean rate (bit/s) over ``[t0, t1]``, following the loop."""
        if t1 <= t0:
            return self.rate_at(t0)
        return (self._integral(t1) - self._integral(t0)) / (t1 - t0)

    @property
    def mean_bps(self) -> float:
        """Time-weighted mean over one loop: what a replay of the whole trace delivers."""
        return self._integral(self.duration_s) / self.duration_s

    @property
    def sample_mean_bps(self) -> float:
        """Plain mean of the samples, as dataset READMEs usually quote it. It differs from
        ``mean_bps`` when samples are irregular (the Norway traces log slow periods sparsely)."""
        return math.fsum(self.rates_bps) / len(self.rates_bps)

    def scaled(self, x: float) -> "BandwidthTrace":
        if not (math.isfinite(x) and x >= 0):
            raise BandwidthTraceError(f"trace scale must be a finite number >= 0, got {x!r}")
        return BandwidthTrace(self.times_s, tuple(r * x for r in self.rates_bps),
                              f"{self.name}x{x:g}")

    def _integral(self, t: float) -> float:
        """Bits delivered from time 0 to ``t`` (looping)."""
        d = self.duration_s
        ends = self.times_s[1:] + (d,)
        per_loop = math.fsum(r * (e - s) for s, e, r in zip(self.times_s, ends, self.rates_bps))
        loops, rest = divmod(max(t, 0.0), d)
        part = math.fsum(r * (min(e, rest) - s)
                         for s, e, r in zip(self.times_s, ends, self.rates_bps) if s < rest)
        return loops * per_loop + part


def load_trace(path: str | Path, direction: Literal["down", "up"] = "down") -> BandwidthTrace:
    """Read a pensieve-cooked or G-NetTrack CSV trace file (see the module docstring).
    ``direction`` picks DL_bitrate or UL_bitrate in a CSV; pensieve files have one rate."""
    path = Path(path)
    if direction not in ("down", "up"):
        raise TraceFileError(f"{path}: direction must be 'down' or 'up', got {direction!r}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TraceFileError(f"cannot read trace file {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise TraceFileError(f"{path}: the file is empty; accepted formats: {'; '.join(FORMATS)}")
    if "Timestamp" in first and "," in first:
        times, rates = _read_gnettrack(path, lines, direction)
    elif len(first.split()) == 1 and first.strip().isdigit():
        times, rates = _read_mahimahi(path, lines)
    else:
        times, rates = _read_pensieve(path, lines)
    if not times:
        raise TraceFileError(f"{path}: no usable samples; accepted formats: {'; '.join(FORMATS)}")
    try:
        return BandwidthTrace.from_samples(times, rates, name=path.name)
    except BandwidthTraceError as exc:
        raise TraceFileError(f"{path}: {exc}") from None


def _bad(path: Path, lineno: int, what: str) -> TraceFileError:
    return TraceFileError(f"{path} line {lineno}: {what}; accepted formats: {'; '.join(FORMATS)}")


def _read_pensieve(path: Path, lines: list[str]) -> tuple[list[float], list[float]]:
    times: list[float] = []
    rates: list[float] = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise _bad(path, lineno, f"expected '<seconds>\\t<Mbit/s>', got {line.strip()!r}")
        try:
            t, mbit = float(fields[0]), float(fields[1])
        except ValueError:
            raise _bad(path, lineno, f"{line.strip()!r} is not two numbers") from None
        if not (math.isfinite(t) and math.isfinite(mbit) and mbit >= 0):
            raise _bad(path, lineno, f"rate {fields[1]!r} Mbit/s must be a finite number >= 0")
        if times and t < times[-1]:
            raise _bad(path, lineno, f"time {fields[0]!r} s goes back (previous {times[-1]:g})")
        times.append(t)
        rates.append(mbit * 1e6)
    return times, rates


def _read_mahimahi(path: Path, lines: list[str]) -> tuple[list[float], list[float]]:
    stamps: list[int] = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise _bad(path, lineno, f"mahimahi lines are one integer millisecond timestamp >= 0, "
                                     f"got {text!r}")
        ms = int(text)
        if stamps and ms < stamps[-1]:
            raise _bad(path, lineno, f"timestamp {ms} ms goes back (previous {stamps[-1]} ms)")
        stamps.append(ms)
    if not stamps or stamps[-1] == 0:
        raise TraceFileError(f"{path}: a mahimahi trace needs a last timestamp > 0 ms (it is the "
                             "loop period)")
    period_s = stamps[-1] / 1e3
    bins = max(1, math.ceil(period_s / MAHIMAHI_BIN_S - 1e-9))
    width = period_s / bins
    counts = [0] * bins
    for ms in stamps:
        counts[min(int(ms / 1e3 / width), bins - 1)] += 1
    times = [i * width for i in range(bins)]
    return times, [c * MAHIMAHI_PACKET_BITS / width for c in counts]


def _read_gnettrack(path: Path, lines: list[str], direction: str) -> tuple[list[float], list[float]]:
    header_at = next(i for i, ln in enumerate(lines) if ln.strip())
    header = [h.strip() for h in lines[header_at].split(",")]
    column = "DL_bitrate" if direction == "down" else "UL_bitrate"
    for needed in ("Timestamp", column):
        if needed not in header:
            raise _bad(path, header_at + 1, f"the CSV header has no {needed!r} column")
    ti, ri = header.index("Timestamp"), header.index(column)
    times: list[float] = []
    rates: list[float] = []
    t0: datetime | None = None
    for lineno, line in enumerate(lines[header_at + 1:], header_at + 2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) <= max(ti, ri):
            raise _bad(path, lineno, f"{len(fields)} fields, the header has {len(header)}")
        stamp, value = fields[ti], fields[ri]
        try:
            when = datetime.strptime(stamp, "%Y.%m.%d_%H.%M.%S")
        except ValueError:
            raise _bad(path, lineno, f"Timestamp {stamp!r} is not like 2019.12.14_10.16.30") from None
        if value == "-":
            continue  # missing: the previous rate holds (see the module docstring)
        try:
            kbit = float(value)
        except ValueError:
            raise _bad(path, lineno, f"{column} {value!r} is not a number of kbit/s or '-'") from None
        if not (math.isfinite(kbit) and kbit >= 0):
            raise _bad(path, lineno, f"{column} {value!r} kbit/s must be a finite number >= 0")
        t0 = t0 or when
        t = (when - t0).total_seconds()
        if times and t < times[-1]:
            raise _bad(path, lineno, f"Timestamp {stamp!r} goes back in time")
        times.append(t)
        rates.append(kbit * 1e3)
    return _spread_within_seconds(times), rates


def _spread_within_seconds(times: list[float]) -> list[float]:
    """G-NetTrack logs about one row a second but truncates times to the second, so two rows
    often share a second (and the next second has none). k rows in one second are placed at
    s, s + 1/k, ... so that each row holds for a while instead of the first lasting 0 s."""
    out: list[float] = []
    i = 0
    while i < len(times):
        j = i
        while j < len(times) and times[j] == times[i]:
            j += 1
        out.extend(times[i] + (m - i) / (j - i) for m in range(i, j))
        i = j
    return out
