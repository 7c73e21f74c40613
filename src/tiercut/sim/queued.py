"""The simulator's run for a policy that re-decides queued requests (``Policy.replans``):
see ``simulator``'s notes. The same walk of a plan's steps as ``Simulator.run``, kept apart
so that the loop every other policy runs stays as it was (and as fast): here a request queued
on the device waits, and is walked when its turn comes, with the plan the policy then gives it
(``replan_queued``)."""
from __future__ import annotations

import heapq
import math
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from ..adapt.estimators import PROBE_BITS, Observation
from .steps import DELAY, DEVICE_CPU, FORK, LOADED_CPU, TRANSFER, Resources

if TYPE_CHECKING:
    from ..adapt.policies import Policy


def run_replanning(sim, policy: "Policy", times: np.ndarray,
                   overdue_step: float) -> tuple:
    """``sim`` (a ``Simulator``) running ``policy``: what ``RunResult`` holds after (policy, arrivals): latency, energy, plan index, cuts,
    switches, wall seconds; then its notes, hedged, local wins and replanned."""
    times_list = times.tolist()
    n = len(times_list)
    # per request, as C doubles: a list would keep two float objects alive per request
    latency = array("d", bytes(8 * n))
    energy = array("d", bytes(8 * n))
    index = [0] * n
    finish = sim.timeline.finish
    load_at = sim.load.rate_at if sim.load is not None else None
    servers = Resources(sim, load_at is not None)
    free, compiled, forks = servers.free, servers.compiled, servers.forks
    uplink = device_cpu = -1  # copies of servers' (set when a plan is first compiled)
    device_links = servers.device_links  # the same list, grown as plans are compiled
    pc, pr = sim.power_c, sim.power_r
    observes = policy.observes
    every = policy.probe_every_s if observes else math.inf
    probes = math.isfinite(every)
    # the policy hears of a finished request or a transfer under way only at a later
    # arrival: what ends (or starts) after the last one can never be told, so it is not
    # queued (under overload that is most requests, and their records cost memory and time)
    horizon = max(times_list, default=0.0)
    # finished requests, delivered to the policy in completion order: (end, k, bits,
    # seconds, load); the Observation is only built when it is delivered
    pending: list = []
    sending: deque = deque()  # (start, end, bits) on the device's uplink, in order
    told = 0.0  # how long the head of ``sending`` was under way when last told
    stuck, probe_told = None, 0.0  # a probe under way at the last arrival; as ``told``
    last = None
    switches = missed = hedged = local_wins = replanned = 0
    why = ""
    heappush, heappop = heapq.heappush, heapq.heappop
    start_wall = time.perf_counter()
    replans = bool(getattr(policy, "replans", False))
    waiting: deque = deque()  # (k, arrival, compiled, hedge, after, speed, frac): queued
    caught = -math.inf  # when the policy was last told what it could know

    def catch_up(t: float) -> None:
        # tell the policy what it could know at t: finished requests, transfers and
        # probes under way, and the idle probes due by t
        nonlocal told, stuck, probe_told, caught
        caught = t
        while pending and pending[0][0] <= t:
            end, _, bits, seconds, load = heappop(pending)
            if load is None and load_at is not None:
                load = load_at(end)  # the server's Load reply
            policy.observe(Observation(end, bits, seconds, load))
        if sending:
            while sending and sending[0][1] <= t:
                sending.popleft()
                told = 0.0
            if sending and t - sending[0][0] > told * overdue_step:
                s0, _, b0 = sending[0]
                told = t - s0
                policy.observe(Observation(t, b0, told, done=False))
        if stuck is not None:  # a probe still under way: told as a transfer is
            if stuck[1] <= t:
                stuck = None
            elif t - stuck[0] > probe_told * overdue_step:
                probe_told = t - stuck[0]
                policy.observe(Observation(t, PROBE_BITS, probe_told, done=False))
        if probes and policy.next_probe() <= t and stuck is None:
            stuck = sim._probe(policy, t, every, free, uplink)
            if stuck is not None:
                probe_told = max(t - stuck[0], 0.0)

    def serve(k: int, t: float, x: float, c, hedge: bool, after_s: float, speed: float,
              frac: float) -> None:
        # request k (arrived at t) walks plan c's steps from x
        nonlocal hedged, local_wins
        steps, device_s, link_bits = c.steps, c.device_s, c.link_bits
        tx = 0.0
        seen_load = None
        for op, rid, hold, after, bits in steps:
            if op == TRANSFER:
                f = free[rid]
                s = f if f > x else x
                x = finish(s, bits / frac)
                tx += x - s
                free[rid] = x
                if rid == uplink and observes and s <= horizon:
                    sending.append((s, x, bits))
            elif op == FORK:  # parts at once from x, each a chain; the slowest ends it
                end = x
                for part in forks[rid]:
                    y = x
                    for op2, rid2, hold2, after2 in part:
                        if op2 != DELAY:
                            if op2 == LOADED_CPU:
                                hold2 *= load_at(y)
                            f = free[rid2]
                            y = (f if f > y else y) + hold2
                            free[rid2] = y
                        y += after2
                    if y > end:
                        end = y
                x = end
            elif op != DELAY:
                if op == DEVICE_CPU:
                    hold /= speed
                elif op == LOADED_CPU:
                    seen_load = load_at(x)
                    hold *= seen_load
                f = free[rid]
                x = (f if f > x else x) + hold
                free[rid] = x
            x += after
        done = x
        hedge_j = 0.0
        if link_bits > 0.0 and hedge:
            # the rest of the model on the device too, once its own part is done and its
            # processor free (both: when the processor is next free, if not before the
            # arrival), plus the policy's wait; the first to finish answers and the
            # device stops there
            hedged += 1
            hs = (free[device_cpu] if free[device_cpu] > t else t) + after_s
            he = hs + (sim.costs.device_alone_s() - device_s) / speed
            if he < x:
                done = he
                local_wins += 1
            if done > hs:  # (an answer before a delayed start leaves the device idle)
                free[device_cpu] = done
                hedge_j = pc * (done - hs) * speed * speed * speed
        latency[k] = done - t
        energy[k] = pc * device_s * speed * speed + pr * tx * frac * frac + hedge_j
        index[k] = c.cut
        if observes and x <= horizon:
            # when nothing crossed the link, no rate: the idle probes tell it
            heappush(pending, (x, k, link_bits, tx * frac, seen_load) if tx > 0.0
                     else (x, k, 0.0, 0.0, seen_load))

    def release(upto: float) -> None:
        # the requests queued on the device whose turn comes by ``upto``: each re-decided
        # by the policy when it reaches the head of the queue (``Policy.replan_queued``)
        nonlocal replanned, uplink, device_cpu
        while waiting:
            k, t, c, hedge, after_s, speed, frac = waiting[0]
            h = free[device_cpu] if free[device_cpu] > t else t
            if h > upto:
                return
            waiting.popleft()
            if h > caught:
                catch_up(h)
            p = policy.replan_queued(h, c.plan)
            if p is not None and p is not c.plan:
                c2 = compiled.get(id(p))
                if c2 is None:
                    c2 = servers.compile(p)
                    uplink, device_cpu = servers.uplink, servers.device_cpu
                if c2.cut != c.cut:
                    replanned += 1
                c, hedge, after_s = c2, policy.hedge, policy.hedge_after_s
                speed, frac = policy.speed, policy.send_fraction
            serve(k, t, h, c, hedge, after_s, speed, frac)

    for k in range(n):
        t = times_list[k]
        if waiting:
            release(t)
        catch_up(t)
        backlog = 0.0
        if device_cpu >= 0 and free[device_cpu] > t:
            backlog += free[device_cpu] - t
        for w in waiting:  # queued on the device, not yet served
            backlog += w[2].device_s / w[5]
        for rid in device_links:
            if free[rid] > t:
                backlog += free[rid] - t
        p = policy.next_plan(t, backlog)
        if policy.unreachable:
            missed += 1
            why = policy.unreachable
        c = compiled.get(id(p))
        if c is None:
            c = servers.compile(p)
            uplink, device_cpu = servers.uplink, servers.device_cpu
        if c is not last:
            if last is not None and c.cut != last.cut:
                switches += 1
            last = c
        if replans and c.steps and c.steps[0][0] == DEVICE_CPU and (
                waiting or free[device_cpu] > t):  # it waits its turn on the device
            waiting.append((k, t, c, policy.hedge, policy.hedge_after_s, policy.speed,
                            policy.send_fraction))
            continue
        serve(k, t, t, c, policy.hedge, policy.hedge_after_s, policy.speed,
              policy.send_fraction)
    release(math.inf)
    wall = time.perf_counter() - start_wall
    notes = [f"goal unreachable for {missed} of {n} requests, e.g. {why}"] if missed else []
    return (np.asarray(latency), np.asarray(energy), np.asarray(index), servers.cuts,
            switches, wall), (notes, hedged, local_wins, replanned)
