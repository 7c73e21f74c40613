"""The runtime with a policy: one ``SplitClient`` per plan, chosen per request.

Before each request the policy names a plan; the client for it is made (and the servers sent
its stages) on first use, or ahead of time with ``prepare(plans)``. Requests go one at a time
through ``infer``, so a switch happens between requests: a request in flight always finishes
on the plan it started with. After each request its measurement goes back to the policy.
A policy that hedges the request (``Policy.hedge``) has it raced against the device
(``SplitClient.ainfer(hedge=True)``); when the device answers first, the transfer that had not
come back by then is reported as one still under way (a bound on the rate).

Idle probes: a plan that keeps everything on the device sends nothing, so the bandwidth
estimate would never move again. Between requests, ``idle(seconds)`` waits and, whenever the
policy asks for one (``Policy.next_probe``), sends a probe of PROBE_BITS up the device's first
hop and reports its rate like a transfer; and while a request runs a plan that sends nothing
(the link idle through a long device run) they go out meanwhile, so that the next request
goes remote as soon as the link is back. A probe is the tier server's ``Probe`` call, made
twice: empty, then carrying the padding; the difference of their round trips is the padding's
transfer time, with the latency and the per-call costs (which a slow or CPU-capped device
pays too) taken out.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..planner.plan import Plan
from .costs import plan_key
from .estimators import PROBE_BITS, Observation, samples
from .policies import Policy

MIN_PROBE_WAIT_S = 0.05  # a probe during a device run waits at least this long for its answer


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
        self.probes = 0
        self.probe_errors: list[BaseException] = []  # probes during device runs that failed
        self._probe_channels: dict[str, Any] = {}
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
        client = self.client_for(p)
        with self._probing(p):
            output, m = client.infer(*inputs, hedge=self.policy.hedge,
                                     hedge_after_s=self.policy.hedge_after_s)
        self.plans.append(p)
        s = samples(m, p.tier_seconds, self.latency_s)
        done = self.clock() - self._t0
        if s is not None:
            load = s.loads.get(self.load_tier, (None, 0))[0] if self.load_tier else None
            self.policy.observe(Observation(done, s.bits, s.seconds, load))
        elif m.hedged and m.hops:  # the device answered first: the answer had not come back
            hop = m.hops[0]
            first = next(iter(p.tier_seconds))
            remote_s = sum(sec for tier, sec in p.tier_seconds.items() if tier != first)
            seconds = hop.seconds - 2 * self.latency_s - remote_s  # what the link took, at least
            if seconds > 0:
                self.policy.observe(Observation(done, 8.0 * hop.bytes_sent, seconds,
                                                done=False))
        return output, m, p

    @contextlib.contextmanager
    def _probing(self, p: Plan) -> Iterator[None]:
        """While a plan that sends nothing computes on the device, the link is idle: the probes
        the policy asks for go out meanwhile (a thread of their own), so that a link back from
        an outage is seen during a long device run, not only after it, and the next request
        can go remote as soon as that pays. The policy is touched by that thread alone until
        the run ends (the caller waits in ``infer``); a probe still under way then is
        cancelled, unreported (one that takes the whole probe interval is reported as a bound
        first, as ``idle`` does)."""
        every = getattr(self.policy, "probe_every_s", math.inf)  # (a policy need not probe)
        if len([h for h in p.hosts.values() if h is not None]) > 1 or not math.isfinite(every):
            yield
            return
        done = threading.Event()
        failed: list[BaseException] = []

        def send() -> None:
            while not done.is_set():
                due = self.policy.next_probe()
                if due <= self.now():
                    try:
                        self.probe(timeout_s=max(every, MIN_PROBE_WAIT_S), stop=done)
                    except Exception as exc:  # noqa: BLE001 (reported after the run)
                        failed.append(exc)
                        return
                else:
                    done.wait(min(due - self.now(), every) if math.isfinite(due) else every)

        thread = threading.Thread(target=send, name="tiercut-probe", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()  # wakes the thread, and cancels a probe under way
            thread.join()
        if failed:
            self.probe_errors.append(failed[0])

    def now(self) -> float:
        """The policy's clock: seconds since this client was made."""
        return self.clock() - self._t0

    def first_hop(self) -> str:
        """The endpoint the device's link leads to: the last plan's first hop, else the next
        tier's."""
        if self.plans:
            tiers = [t for t, host in self.plans[-1].hosts.items() if host is not None]
            if len(tiers) > 1:
                return self._endpoint(tiers[0], tiers[1])
        first = next((k for k in self.dial if isinstance(k, tuple)), None)
        return self._endpoint(*first) if first else next(iter(self.dial.values()))

    def probe(self, endpoint: str | None = None, timeout_s: float | None = None,
              stop: threading.Event | None = None) -> Observation | None:
        """Send one probe now and report it to the policy. One that has not crossed within
        ``timeout_s`` is reported as a transfer still under way (the link is slower than its
        bits over that time: ``Observation.done`` False), and the wait ends there. ``stop``
        set while it is under way cancels it: nothing is reported, and None returned."""
        import grpc

        endpoint = endpoint or self.first_hop()
        call, metadata = self._probe_call(endpoint)
        from ..runtime import tiercut_pb2 as pb

        empty = pb.ProbeRequest()
        padded = pb.ProbeRequest(padding=bytes(PROBE_BITS // 8))
        if timeout_s is None:
            timeout_s = max(60.0, self.client_kwargs.get("deadline_s") or 0.0)
        t0 = self.clock()
        t1 = None
        done = True
        try:
            _call(call, empty, timeout_s, metadata, stop)
            t1 = self.clock()
            _call(call, padded, max(timeout_s - (t1 - t0), 1e-3), metadata, stop)
        except _Cancelled:
            return None
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            done = False
        if t1 is None:  # the empty call itself timed out
            t1 = t0
        seconds = max((self.clock() - t1) - (t1 - t0), 1e-9)
        obs = Observation(self.now(), float(PROBE_BITS), seconds, done=done)
        self.policy.observe(obs)
        self.probes += 1
        return obs

    def idle(self, seconds: float) -> int:
        """Wait ``seconds``, sending the probes the policy asks for meanwhile (each bounded by
        the time left, so that a stalled link does not hold the caller); returns how many were
        sent."""
        end = self.clock() + seconds
        sent = 0
        while True:
            left = end - self.clock()
            if left <= 0:
                return sent
            due = self.policy.next_probe()
            if due <= self.now():
                self.probe(timeout_s=left)
                sent += 1
            else:
                time.sleep(min(left, due - self.now()) if math.isfinite(due) else left)

    def _probe_call(self, endpoint: str) -> tuple[Any, Any]:
        from ..runtime import tiercut_pb2 as pb
        from ..runtime.security import metadata, open_channel

        security = self.client_kwargs.get("security")
        if endpoint not in self._probe_channels:
            channel = open_channel(endpoint, security, [], sync=True)
            call = channel.unary_unary("/tiercut.runtime.TierServer/Probe",
                                       request_serializer=pb.ProbeRequest.SerializeToString,
                                       response_deserializer=pb.ProbeReply.FromString)
            pairs = metadata(security) or None
            call(pb.ProbeRequest(), timeout=60.0, metadata=pairs)  # connect now, not during the first probe
            self._probe_channels[endpoint] = (channel, call, pairs)
        _, call, pairs = self._probe_channels[endpoint]
        return call, pairs

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.clients.clear()
        for channel, _, _ in self._probe_channels.values():
            channel.close()
        self._probe_channels.clear()

    def __enter__(self) -> "AdaptiveClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _call(call: Any, request: Any, timeout_s: float, metadata: Any,
          stop: threading.Event | None) -> Any:
    """A unary call, blocking; with ``stop``, cancelled once that is set (``_Cancelled``)."""
    if stop is None:
        return call(request, timeout=timeout_s, metadata=metadata)
    future = call.future(request, timeout=timeout_s, metadata=metadata)
    ended = threading.Event()
    future.add_done_callback(lambda _: ended.set())
    while not ended.wait(0.01):  # stop is checked each 10 ms; the answer wakes at once
        if stop.is_set():
            future.cancel()
            raise _Cancelled
    return future.result()


class _Cancelled(Exception):
    """A probe's call cancelled by its ``stop`` event."""
