"""The runtime with a policy: one ``SplitClient`` per plan, chosen per request.

Before each request the policy names a plan; the client for it is made (and the servers sent
its stages) on first use, or ahead of time with ``prepare(plans)``. Requests go one at a time
through ``infer``, so a switch happens between requests: a request in flight always finishes
on the plan it started with. After each request its measurement goes back to the policy.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from ..planner.plan import Plan
from ..sim.costs import plan_key
from .estimators import Observation, samples
from .policies import Policy


class AdaptiveClient:
    """``dial``: (src tier, dst tier) -> the endpoint that reaches dst from src (through the
    emulated link, if any), or tier -> endpoint when every hop reaches a tier the same way."""

    def __init__(self, policy: Policy, dial: Mapping[Any, str], load_tier: str | None = None,
                 latency_s: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 **client_kwargs: Any):
        self.policy, self.dial, self.load_tier = policy, dict(dial), load_tier
        self.latency_s, self.clock, self.client_kwargs = latency_s, clock, client_kwargs
        self.clients: dict[tuple, Any] = {}
        self.plans: list[Plan] = []  # the plan each request ran on
        self.switches = 0
        self._t0 = clock()

    def _endpoint(self, a: str, b: str) -> str:
        return self.dial[(a, b)] if (a, b) in self.dial else self.dial[b]

    def client_for(self, p: Plan) -> Any:
        from ..runtime.client import SplitClient

        key = plan_key(p)
        if key not in self.clients:
            tiers = [t for t, host in p.hosts.items() if host is not None]  # route order
            endpoints = [self._endpoint(tiers[i - 1], tiers[i]) for i in range(1, len(tiers))]
            client = SplitClient(p.to_dict(), endpoints, **self.client_kwargs)
            client.prepare()
            self.clients[key] = client
        return self.clients[key]

    def prepare(self, plans: Iterable[Plan]) -> None:
        """Send these plans' stages to the servers now, so that switching to them later costs
        no build."""
        for p in plans:
            self.client_for(p)

    def infer(self, *inputs: Any) -> tuple[Any, Any, Plan]:
        now = self.clock() - self._t0
        p = self.policy.next_plan(now)
        if self.plans and plan_key(self.plans[-1]) != plan_key(p):
            self.switches += 1
        output, m = self.client_for(p).infer(*inputs)
        self.plans.append(p)
        s = samples(m, p.tier_seconds, self.latency_s)
        done = self.clock() - self._t0
        if s is not None:
            load = s.loads.get(self.load_tier, (None, 0))[0] if self.load_tier else None
            self.policy.observe(Observation(done, s.bits, s.seconds, load))
        return output, m, p

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()

    def __enter__(self) -> "AdaptiveClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
