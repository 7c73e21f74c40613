"""User trajectories sampled every ``dt``: arrays of shape [T, 2] in metres."""
from __future__ import annotations

import csv

import numpy as np

from tiercut.errors import TiercutError


class PathFileError(TiercutError, ValueError):
    """A recorded path file with a malformed row; the message names the file and line."""


def _steps(duration_s: float, dt: float) -> np.ndarray:
    if not dt > 0 or not duration_s > 0:
        raise ValueError(f"duration_s={duration_s} and dt={dt} must both be > 0")
    return np.arange(int(np.floor(duration_s / dt)) + 1) * dt


def random_waypoint(area_m, speed_mps: float, pause_s: float, duration_s: float,
                    dt: float, seed: int = 0) -> np.ndarray:
    """Walk straight to uniform random waypoints in [0,w]x[0,h] at ``speed_mps``, pausing."""
    w, h = (area_m, area_m) if np.isscalar(area_m) else area_m
    if not speed_mps > 0:
        raise ValueError(f"speed_mps={speed_mps} must be > 0")
    rng = np.random.default_rng(seed)
    ts = _steps(duration_s, dt)
    # legs: (t_start, t_arrive, t_leave, p_from, p_to)
    pos = rng.uniform([0, 0], [w, h])
    t, legs = 0.0, []
    while t <= ts[-1]:
        nxt = rng.uniform([0, 0], [w, h])
        t_arr = t + np.linalg.norm(nxt - pos) / speed_mps
        legs.append((t, t_arr, pos, nxt))
        t, pos = t_arr + pause_s, nxt
    out = np.empty((len(ts), 2))
    k = 0
    for i, tt in enumerate(ts):
        while k + 1 < len(legs) and legs[k + 1][0] <= tt:
            k += 1
        t0, t1, a, b = legs[k]
        f = 1.0 if t1 <= t0 else min(1.0, (tt - t0) / (t1 - t0))
        out[i] = a + f * (b - a)
    return out


def road(length_m: float, speed_mps: float, duration_s: float, dt: float,
         seed: int = 0) -> np.ndarray:
    """Drive along y=0 over [0, length_m] at ``speed_mps``, turning at each end."""
    if not length_m > 0 or not speed_mps > 0:
        raise ValueError(f"length_m={length_m} and speed_mps={speed_mps} must be > 0")
    rng = np.random.default_rng(seed)
    s = (rng.uniform(0, 2 * length_m) + speed_mps * _steps(duration_s, dt)) % (2 * length_m)
    x = np.where(s < length_m, s, 2 * length_m - s)
    return np.stack([x, np.zeros_like(x)], axis=1)


def recorded(path) -> np.ndarray:
    """Positions from a CSV with header ``t,x,y`` (times increasing); returns [T, 2]."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != ["t", "x", "y"]:
            raise PathFileError(f"{path}:1: header must be 't,x,y', got {header!r}")
        last_t = -np.inf
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise PathFileError(f"{path}:{line_no}: expected 3 fields t,x,y, got {row!r}")
            try:
                t, x, y = (float(c) for c in row)
            except ValueError:
                raise PathFileError(f"{path}:{line_no}: non-numeric value in {row!r}") from None
            if not np.isfinite([t, x, y]).all() or t <= last_t:
                raise PathFileError(f"{path}:{line_no}: t must be finite and increasing, "
                                    f"got {row!r}")
            last_t = t
            rows.append((x, y))
    if not rows:
        raise PathFileError(f"{path}: no positions after the header")
    return np.array(rows, dtype=float)


def recorded_users(path) -> dict:
    """Positions of several users from a CSV with header ``t,user,x,y`` (rows in any order):
    {user: [T_user, 2]} in time order. The same user at the same t twice (two users
    claiming one id) is an error naming the id, the file and both lines."""
    seen, rows = {}, {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [c.strip() for c in header] != ["t", "user", "x", "y"]:
            raise PathFileError(f"{path}:1: header must be 't,user,x,y', got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 4:
                raise PathFileError(f"{path}:{line_no}: expected 4 fields t,user,x,y, "
                                    f"got {row!r}")
            user = row[1].strip()
            if not user:
                raise PathFileError(f"{path}:{line_no}: empty user id in {row!r}")
            try:
                t, x, y = (float(row[i]) for i in (0, 2, 3))
            except ValueError:
                raise PathFileError(f"{path}:{line_no}: non-numeric value in {row!r}") from None
            if not np.isfinite([t, x, y]).all():
                raise PathFileError(f"{path}:{line_no}: t, x, y must be finite, got {row!r}")
            if (user, t) in seen:
                raise PathFileError(
                    f"{path}: user {user!r} has two positions at t={t:g} (lines "
                    f"{seen[user, t]} and {line_no}); two users share that id: give each "
                    f"its own")
            seen[user, t] = line_no
            rows.setdefault(user, []).append((t, x, y))
    if not rows:
        raise PathFileError(f"{path}: no positions after the header")
    return {u: np.array([(x, y) for _, x, y in sorted(r)], dtype=float)
            for u, r in rows.items()}
