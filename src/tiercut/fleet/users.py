"""The users of a fleet: unique ids, how often each asks, how fast its device is, where it is.

Positions move by random waypoint, all users at once as arrays (a user walks straight to a
uniform random point of the area at its own speed, pauses, and picks the next), so that ten
thousand users cost a few array operations a step. Random waypoint crowds the middle of the
area (its stationary density peaks there), which gives the central edge servers more users
than the outer ones: the uneven load a shared-edge controller must cope with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiercut.errors import TiercutError


class DuplicateUserError(TiercutError, ValueError):
    """Two users claim one id; the message names the id and both positions in the list."""


def check_ids(ids) -> tuple[str, ...]:
    """The ids as strings, each non-empty and claimed once."""
    seen: dict[str, int] = {}
    out = []
    for i, raw in enumerate(ids):
        uid = str(raw)
        if not uid:
            raise ValueError(f"user {i} has an empty id; give every user a non-empty id")
        if uid in seen:
            raise DuplicateUserError(f"user id {uid!r} is claimed by users {seen[uid]} and {i};"
                                     " every user needs its own id")
        seen[uid] = i
        out.append(uid)
    return tuple(out)


@dataclass
class Users:
    """N users: ids, requests per second, device speed (1 = the profiled device), positions."""
    ids: tuple
    rate_per_s: np.ndarray  # [N] Poisson request rate
    device_speed: np.ndarray  # [N] compute speed relative to the profiled device
    xy: np.ndarray  # [N, 2] metres

    def __post_init__(self):
        self.ids = check_ids(self.ids)
        n = len(self.ids)
        if n == 0:
            raise ValueError("Users: no users; give at least one")
        self.rate_per_s = _per_user(self.rate_per_s, n, "rate_per_s", allow_zero=True)
        self.device_speed = _per_user(self.device_speed, n, "device_speed")
        self.xy = np.array(self.xy, dtype=float)
        if self.xy.shape != (n, 2) or not np.isfinite(self.xy).all():
            raise ValueError(f"Users.xy must be {n} finite (x, y) positions, got shape "
                             f"{self.xy.shape}")

    def __len__(self) -> int:
        return len(self.ids)


def _per_user(value, n: int, name: str, allow_zero: bool = False) -> np.ndarray:
    a = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy() \
        if np.ndim(value) == 0 else np.asarray(value, dtype=float)
    if a.shape != (n,):
        raise ValueError(f"Users.{name} must be one number or {n} numbers, got shape {a.shape}")
    bad = ~np.isfinite(a) | ((a < 0) if allow_zero else (a <= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"Users.{name}[{i}]={float(a[i])!r}: accepted values are finite numbers "
                         f"{'>= 0' if allow_zero else '> 0'}")
    return a


class Walkers:
    """Random waypoint for every user at once, stepped in place."""

    def __init__(self, n: int, area_m, speed_mps=(0.5, 1.5), pause_s: float = 30.0,
                 seed: int = 0):
        w, h = (area_m, area_m) if np.isscalar(area_m) else area_m
        lo, hi = (speed_mps, speed_mps) if np.isscalar(speed_mps) else speed_mps
        if not (w > 0 and h > 0):
            raise ValueError(f"area_m={area_m!r}: width and height must be > 0 metres")
        if not 0 < lo <= hi:
            raise ValueError(f"speed_mps={speed_mps!r}: need 0 < low <= high metres a second")
        if not pause_s >= 0:
            raise ValueError(f"pause_s={pause_s!r} must be >= 0 seconds")
        self.size = np.array([w, h], dtype=float)
        self.rng = np.random.default_rng(seed)
        self.xy = self.rng.uniform(0, 1, (n, 2)) * self.size
        self.target = self.rng.uniform(0, 1, (n, 2)) * self.size
        self.speed = self.rng.uniform(lo, hi, n)
        self.pause_s = float(pause_s)
        self.paused = np.zeros(n)

    def step(self, dt: float) -> np.ndarray:
        """Advance every user by ``dt`` seconds; returns the new positions [N, 2]."""
        moving = self.paused <= 0
        self.paused = np.maximum(self.paused - dt, 0.0)
        d = self.target - self.xy
        dist = np.sqrt((d * d).sum(axis=1))
        reach = self.speed * dt
        arrive = moving & (dist <= reach)
        go = moving & ~arrive
        self.xy[go] += d[go] * (reach[go] / dist[go])[:, None]
        if arrive.any():
            self.xy[arrive] = self.target[arrive]
            self.target[arrive] = self.rng.uniform(0, 1, (int(arrive.sum()), 2)) * self.size
            self.paused[arrive] = self.pause_s
        return self.xy
