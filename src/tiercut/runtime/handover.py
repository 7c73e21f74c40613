"""Hand-over: the device client moves a tier's stage to other servers while its stream runs,
make before break, with no request lost.

1. **Make**: the new hosts are sent Prepare, whether or not they held the stage before (a
   server may have dropped it; they build it now, not on the first request), then warmed: each is sent ``warmups`` copies of the last request the client sent
   that tier (a real input, so the stage's first run, the connection and the stream to it are
   paid before the switch, and the answers are dropped). A new host that cannot be prepared is
   skipped; when none can be, ``HandOverError`` and the client stays where it was.
2. **Move**: new requests go to the new hosts; the old ones stay behind them as failover
   alternates until the drain ends (a new host that drops out right after the switch sends
   its requests back to the old one rather than to the device).
3. **Break**: the client waits (up to ``drain_timeout_s``) for the requests that were in flight
   on the old hosts to be answered, then drops the old hosts. A request whose host vanishes
   mid-flight is retried on the tier's current hosts, then finished on the device.

For a tier after the first remote one, the tier before it is prepared again with the new hosts
as its next tier (its servers rebuild the stage: a pause there), and nothing is warmed (the
client never holds that tier's inputs).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import TiercutError
from .stream import CallFailed

DRAIN_POLL_S = 0.002  # how often the drain looks at what is still in flight


class HandOverError(TiercutError):
    """A hand-over that could not be made; the client still uses its old hosts."""


@dataclass(frozen=True)
class HandOver:
    """What one hand-over did and how long each step took."""

    tier: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    skipped: tuple[str, ...]  # new hosts that could not be prepared (with their reasons below)
    reasons: tuple[str, ...]
    prepare_s: float
    warmed: int  # warm-up requests answered
    warm_s: float
    switched_at: float  # time.perf_counter() when new requests moved to the new hosts
    in_flight: int  # requests on the old hosts at the switch
    drained: bool  # all of them answered within the drain timeout
    drain_s: float


def check_hosts(hosts: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(hosts, str):
        hosts = (hosts,)
    hosts = tuple(hosts)
    if not hosts or not all(isinstance(h, str) and h.strip() and ":" in h for h in hosts):
        raise ValueError(f"hand over to at least one host:port, got {list(hosts)!r}")
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"hand-over hosts {list(hosts)} name a host twice")
    return hosts


async def hand_over(client: Any, hosts: Sequence[str] | str, tier: str | None = None,
                    warmups: int = 1, drain_timeout_s: float = 30.0) -> HandOver:
    """Move ``tier``'s stage (the first tier after the device by default) to ``hosts``."""
    plan = client.plan
    new = check_hosts(hosts)
    remote = plan.tiers[1:]
    tier = remote[0] if tier is None and remote else tier
    if tier not in remote:
        raise ValueError(f"tier {tier!r} is not one of the plan's tiers after the device "
                         f"{list(remote)}")
    if isinstance(warmups, bool) or not isinstance(warmups, int) or warmups < 0:
        raise ValueError(f"warmups {warmups!r} must be a count >= 0")
    if not drain_timeout_s > 0:
        raise ValueError(f"drain_timeout_s {drain_timeout_s!r} must be > 0 seconds")
    k = plan.tiers.index(tier)
    old = client.hosts[k - 1]
    t = time.perf_counter()
    prepared, failed = await client.aprepare_hosts(k, new, force=True)
    skipped, reasons = tuple(f.endpoint for f in failed), tuple(f.reason for f in failed)
    if not prepared:
        raise HandOverError(f"hand-over of tier {tier!r} to {list(new)} failed: no new host "
                            f"could be prepared ({'; '.join(reasons)}); the client stays on "
                            f"{list(old)}")
    if k > 1:  # the tier before forwards to the new hosts from now on
        await client.aprepare_hosts(k - 1, client.hosts[k - 2], next_hosts=prepared,
                                    force=True)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    warmed = await _warm(client, prepared, warmups) if k == 1 else 0
    warm_s = time.perf_counter() - t
    waiting = client.in_flight_on(old if k == 1 else None)
    client.set_hosts(k, prepared + tuple(h for h in old if h not in prepared))
    t = switched_at = time.perf_counter()
    deadline = t + drain_timeout_s
    while waiting & client.in_flight_on(None) and time.perf_counter() < deadline:
        await asyncio.sleep(DRAIN_POLL_S)
    drained = not (waiting & client.in_flight_on(None))
    client.set_hosts(k, prepared)
    return HandOver(tier, old, prepared, skipped, reasons, prepare_s, warmed, warm_s,
                    switched_at, len(waiting), drained, time.perf_counter() - t)


async def _warm(client: Any, hosts: Sequence[str], warmups: int) -> int:
    """Send each host ``warmups`` copies of the client's last first-tier request; the number
    answered. Nothing to send before the first request: then nothing is warmed."""
    last = client.last_request
    if last is None or not warmups:
        return 0
    answered = 0
    for host in hosts:
        for i in range(warmups):
            request = type(last)()
            request.CopyFrom(last)
            request.request_id = f"{last.request_id}-warm-{host}-{i}"
            try:
                await client.stream_to(host).infer(request, client.prepare_timeout())
                answered += 1
            except CallFailed:
                break  # the host is prepared but busy or slow: the stream goes on regardless
    return answered
