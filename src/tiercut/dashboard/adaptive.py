"""The adaptive client on the dashboard: ``watch(feed, client)`` gives an ``infer`` that runs
``AdaptiveClient.infer`` and publishes the plan it ran (with its break-even rate against the
device, from the policy's decision table), a switch when the plan changed, the request, and
the policy's bandwidth estimate after it."""
from __future__ import annotations

from typing import Any, Callable

from ..adapt.client import AdaptiveClient
from ..adapt.policies import break_even_bps
from ..planner.plan import Plan
from .feed import Feed


def watch(feed: Feed, client: AdaptiveClient) -> Callable[..., tuple[Any, Any, Plan]]:
    last: list[str] = []

    def infer(*inputs: Any) -> tuple[Any, Any, Plan]:
        output, m, p = client.infer(*inputs)
        rates = break_even(client.policy, p)
        plan_id = feed.plan(p, p.placement(), **rates)
        if last and last[-1] != plan_id:
            feed.switch(last[-1], plan_id)
        last[:] = [plan_id]
        feed.request(m, plan_id)
        bandwidth = getattr(client.policy, "bandwidth", None)
        if bandwidth is not None and bandwidth.estimate_bps:
            feed.estimate(bandwidth.estimate_bps)
        return output, m, p

    return infer


def break_even(policy: Any, p: Plan) -> dict[str, Any]:
    """``break_even_bps`` and ``breakpoints_bps`` of ``p`` in the policy's decision table
    (nothing for a policy without one; inf, never faster, ``plan_event`` sends as None).
    The device's own time is the table's plan that sends nothing, as the hedged policy
    takes it."""
    table = getattr(policy, "table", None)
    if table is None:
        return {}
    entry = next((e for e in table.entries if e.plan is p), None)
    local = [e.base for e in table.entries if e.per_inv_bw <= 0]
    rate = break_even_bps(entry, min(local)) if entry is not None and local else None
    return {"break_even_bps": rate, "breakpoints_bps": tuple(table.breakpoints)}

