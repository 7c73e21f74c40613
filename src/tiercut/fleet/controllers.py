"""Who serves each request: the choice of cut and edge server, per user, per time slot.

Every controller sees the same arrays for the users deciding now (b users, m candidate
servers each, K cut options) and returns, per user, the flat index of its choice over m*K:

* ``lat0``: the latency the planner predicts with nothing queued (device compute at the
  user's speed, airtime at its rate to that server, edge compute at that server's speed,
  the fixed latencies, and the state's move when the server is not the user's current one);
* the work a request adds to each queue it joins: ``dev`` (its device), ``air`` (the cell's
  airtime), ``cpu`` (the server's cores, in core-seconds);
* the waits now in those queues: ``wait_dev``, ``wait_air``, ``wait_cpu`` (the server's
  backlog over its cores).

``Nearest`` is tiercut's planner run per user, blind to load: the nearest cell, the cut best
for the user's rate there. ``NearestLoadAware`` keeps the nearest cell and chooses the cut
with the waits there (LoADPart's idea: the cut follows the edge's load). ``LoadAware`` adds
today's waits to each choice's latency and takes the least over cuts and servers together
(join the shortest expected delay).
``DriftPlusPenalty`` is Neely's Lyapunov controller: it minimises V * penalty plus, for each
queue, its wait times the work the choice adds to it (the drift of a sum of squared waits).
In the textbook form the penalty is lat0, and for any V every queue stays stable whenever
some policy can, the time-average lat0 within O(1/V) of the best stable policy's, at a
backlog that grows as O(V); but the backlog's delay is not in lat0, so a large V buys a low
lat0 with long waits. The default penalty therefore adds the waits the request finds; as V
grows it tends to LoadAware, as V falls it weighs each queue's wait by the work a choice
brings, so a heavy cut pays more for a long queue than a light one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Choice:
    """The arrays for the b users deciding now. Invalid choices hold +inf in ``lat0``."""
    lat0: np.ndarray  # [b, m, K] seconds
    dev: np.ndarray  # [b, 1, K] seconds of the user's device
    air: np.ndarray  # [b, m, K] seconds of the cell's airtime (0 for a local cut)
    cpu: np.ndarray  # [b, m, K] core-seconds of the server (0 for a local cut)
    wait_dev: np.ndarray  # [b, 1, 1]
    wait_air: np.ndarray  # [b, m, 1]
    wait_cpu: np.ndarray  # [b, m, 1]
    remote: np.ndarray  # [1, 1, K] bool: the cut uses the radio and the edge


def _pick(cost: np.ndarray) -> np.ndarray:
    b = cost.shape[0]
    return np.argmin(cost.reshape(b, -1), axis=1)


class Nearest:
    name = "nearest"

    def choose(self, c: Choice) -> np.ndarray:
        cost = c.lat0.copy()
        cost[:, 1:, :] = np.inf  # the nearest covering server only (column 0)
        return _pick(cost)


class LoadAware:
    name = "load-aware"

    def choose(self, c: Choice) -> np.ndarray:
        waits = c.wait_dev + c.remote * (c.wait_air + c.wait_cpu)
        return _pick(c.lat0 + waits)


class NearestLoadAware:
    """The nearest server, the cut chosen with its waits: LoADPart's choice, the server fixed."""
    name = "nearest, load-aware cut"

    def choose(self, c: Choice) -> np.ndarray:
        waits = c.wait_dev + c.remote * (c.wait_air + c.wait_cpu)
        cost = c.lat0 + waits
        cost[:, 1:, :] = np.inf
        return _pick(cost)


class DriftPlusPenalty:
    """V * penalty + drift. The penalty is the latency the request is predicted to see: with
    ``waits=True`` (the default) the waits it finds included, with ``waits=False`` the
    textbook form, the zero-queue latency of the action alone, which ignores the delay the
    backlog (O(V)) itself adds."""

    def __init__(self, v_s: float = 1.0, waits: bool = True):
        if isinstance(v_s, bool) or not isinstance(v_s, (int, float)) or \
                not (np.isfinite(v_s) and v_s > 0):
            raise ValueError(f"V={v_s!r}: the drift-plus-penalty weight must be a finite "
                             "number of seconds > 0")
        self.v_s = float(v_s)
        self.waits = bool(waits)
        self.name = f"dpp V={v_s:g}" + ("" if waits else " textbook")

    def choose(self, c: Choice) -> np.ndarray:
        drift = c.wait_dev * c.dev + c.wait_air * c.air + c.wait_cpu * c.cpu
        penalty = c.lat0
        if self.waits:
            penalty = penalty + c.wait_dev + c.remote * (c.wait_air + c.wait_cpu)
        return _pick(self.v_s * penalty + drift)


CONTROLLERS = {"nearest": Nearest, "nearest-load-aware": NearestLoadAware,
               "load-aware": LoadAware, "dpp": DriftPlusPenalty}


def controller(name: str, **kw):
    """A controller by name: nearest, load-aware, dpp (dpp takes v_s=...)."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; choose one of {', '.join(CONTROLLERS)}")
    return CONTROLLERS[name](**kw)
