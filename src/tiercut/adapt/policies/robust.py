"""``robust``: a plan chosen by its expected cost (or a stated quantile of it) over what the
link may be doing now (``uncertainty.RateBelief``), not by a point estimate; raced against the
device, or backed up by it once the answer is late, as that pays over the same belief.

For each arrival, over the belief's weighted rates r (three a recent sample; the wide prior at
a cold start or once history is stale), the policy scores options: each plan that the decision
table picks at some of those rates, and the all-device plan. A remote plan is never sent bare:
it is backed up by the device once it is late against its own prediction at the belief's 10%
rate or at its median (a backup costs nothing unless the answer is that late, and it bounds
what a link that fails as no sample foretold costs), or raced against the device from the
start. Per rate, an option has

* a latency: the plan's cost c(r) (the table's, nothing queued); raced or backed up from
  ``a`` seconds after the device's own part ends, min(c(r), local_s + a): the device's run of
  the whole model answers at local_s + a at the latest;
* device seconds: its device part, and the redundant run until the first answer (a backup's
  wait included: the simulator holds the processor through it);
* the seconds it holds the device's link: its bits / r (a transfer into an outage holds the
  link for the outage: bits handed to the radio cannot be called back);
* device energy: compute power × device seconds + radio power × link seconds (a raced
  request's radio counted until its answer: a client that has its answer may stop sending;
  the simulator's energy charges the whole transfer).

Its score is latency + ``energy_weight`` / compute power × energy (``energy_weight`` seconds of
latency per second of device compute's energy) + a queueing charge for each resource held
b seconds: what it costs the requests behind it, as in an M/G/1 queue (the marginal waiting
of a job of size b is λ·b·(W + b/2)/(1 - ρ)). A Poisson stream of rate λ (one over the mean
time between arrivals, learnt) sends about λ·b requests into that time and, through the busy
period the hold lengthens, 1/(1 - ρ) times as many (ρ, the utilisation, learnt as the share
of arrivals that find a backlog: Poisson arrivals see time averages); each waits the backlog
W the simulator passes (``backlog_s``; none for a request at the head of the queue) plus
about b/2, or takes its best way around the resource: for the device's processor at most
local_s (λ·b·min(W + b/2, local_s)/(1 - ρ)); for
the link what the link is worth at that rate to a request that finds the device's backlog W:
W + local_s less the best remote plan's latency (0 where the device alone is best: a link held
through an outage costs the others nothing; but with work queued on the device the link is
what lets a request go around it). The option
with the least expected score wins, or with ``quantile`` q the least q-quantile of the score.
Ties go to a backup at the 10% rate, then the median, then a race.

Hence: at a cold start or on stale history the belief is wide and a remote plan is raced or
backed up (the device's run bounds it); on a link the belief is sure of, a remote plan carries
a backup that starts only if the link fails as nothing foretold; after an outage, as soon as
probes see the link back, work that stayed on the device goes remote again (new requests,
and those still queued on the device: ``replan_queued`` decides one again when its turn
comes, and the simulator asks it of a policy with ``replans``); on a flapping link
the belief keeps the share of bad samples, so the policy does not chase the newest one.
"""
from __future__ import annotations

import math

from ...planner.plan import Plan
from ...planner.scenario import Scenario
from ...planner.table import DecisionTable
from ..costs import Costs, device_powers
from ..estimators import Observation
from ..uncertainty import RateBelief, check_quantile, weighted_quantile
from .base import PROBE_EVERY_S, Policy, PolicyError, _check_probe
from .hedged import ARRIVAL_ALPHA

# seconds of latency that the energy of one second of device compute is worth (its compute
# power's joules): what a redundant run must save to be worth it, a tenth of its length
ENERGY_WEIGHT = 0.1
LATE_QUANTILES = (0.1, 0.5)
MAX_BUSY = 0.9  # the utilisation at most taken into the queueing charge  # a backup starts when late against the prediction at these rates


class RobustPolicy(Policy):
    name = "robust"
    observes = True
    replans = True  # the simulator asks replan_queued of a request queued on the device

    def __init__(self, table: DecisionTable, scenario: Scenario, initial_bps: float,
                 costs: Costs | None = None, belief: RateBelief | None = None,
                 probe_every_s: float = PROBE_EVERY_S, quantile: float | None = None,
                 energy_weight: float = ENERGY_WEIGHT):
        if quantile is not None:
            check_quantile(quantile)
        if isinstance(energy_weight, bool) or not isinstance(energy_weight, (int, float)) \
                or not 0 <= energy_weight < math.inf:
            raise PolicyError(f"energy weight {energy_weight!r} must be a finite number >= 0 "
                              "(seconds of latency a second of device compute's energy is worth)")
        self.table, self.quantile = table, quantile
        self.costs = costs or Costs(scenario)
        self.local_s = self.costs.device_alone_s()
        self.power_c, self.power_r = device_powers(scenario)
        self.energy_s_per_j = energy_weight / self.power_c if self.power_c > 0 else 0.0
        self.bandwidth = belief or RateBelief(initial_bps)
        self.probe_every_s = _check_probe(probe_every_s)
        # per plan: (table entry, device seconds, bits over the device's link)
        self._plans = {}
        for e in table.entries:
            c = self.costs(e.plan)
            self._plans[id(e.plan)] = (e, c.device_s, c.device_bits)
        local = [k for k, (_, _, bits) in self._plans.items() if bits == 0.0]
        self._local = local[0] if local else None
        self._last, self._gap = None, None
        self._wait = 0.0  # the backlog at the last decision: what a new request waits behind
        self._busy = 0.0  # the share of arrivals that found a backlog (the utilisation)
        self.choice = ("", 0.0)  # the last decision ("plain", "race", "backup"), its score

    def observe(self, obs: Observation) -> None:
        self.bandwidth.observe(obs)

    def next_probe(self) -> float:
        return self.bandwidth.last_t + self.probe_every_s

    def next_plan(self, now: float, backlog_s: float = 0.0) -> Plan:
        if self._last is not None:
            gap, mean = now - self._last, self._gap
            self._gap = gap if mean is None else mean + ARRIVAL_ALPHA * (gap - mean)
        self._last = now
        self._wait = backlog_s if backlog_s > 0.0 else 0.0
        # the share of arrivals that find work queued: the utilisation (Poisson arrivals see
        # time averages), learnt at the arrival gaps' pace
        self._busy += ARRIVAL_ALPHA * ((1.0 if backlog_s > 0.0 else 0.0) - self._busy)
        points = self.bandwidth.points(now)
        plan, hedge, after, kind, score = self.decide(points)
        self.hedge, self.hedge_after_s, self.choice = hedge, after, (kind, score)
        return plan

    def replan_queued(self, now: float, plan: Plan) -> Plan | None:
        """A request queued on the device with ``plan``, at the head of the queue at ``now``:
        its plan decided again over what the link may be doing now (a link back from an
        outage takes queued work off the device); None keeps ``plan``. Sets ``hedge`` and
        ``hedge_after_s`` as ``next_plan`` does; the arrival gaps are not touched."""
        self._wait = 0.0  # its turn: nothing queued ahead of it on the device
        new, hedge, after, kind, score = self.decide(self.bandwidth.points(now))
        self.hedge, self.hedge_after_s, self.choice = hedge, after, (kind, score)
        return new

    def decide(self, points: list[tuple[float, float]]) -> tuple[Plan, bool, float, str, float]:
        """(plan, hedge, hedge_after_s, kind, score) of the best option over ``points``."""
        # arrivals delayed by a hold wait behind the whole busy period it lengthens
        lam = 1.0 / self._gap / (1.0 - min(self._busy, MAX_BUSY)) if self._gap else 0.0
        keys = {id(self.table.best(r)) for r, _ in points}
        if self._local is not None:
            keys.add(self._local)
        order = [k for k in self._plans if k in keys]  # the table's order: ties repeat
        remote = [self._plans[k][0] for k in order if self._plans[k][2] > 0.0]
        # what the link is worth at each rate to a request that finds the backlog: waiting it
        # out and the device alone, less the best remote plan (0 where that is no faster)
        waited = self.local_s + self._wait
        gains = [max(waited - min(e.cost(r) for e in remote), 0.0) if remote else 0.0
                 for r, _ in points]
        late = [weighted_quantile(points, q) for q in LATE_QUANTILES]
        best = None
        for k in order:
            e, dev, bits = self._plans[k]
            costs = [(e.cost(r), r, w, gain) for (r, w), gain in zip(points, gains)]
            # a remote plan is never sent bare (see above); on a tie the first option wins
            options = []
            if bits > 0.0:
                for rate in late:
                    options.append(("backup", True, max(e.cost(rate) - dev, 0.0)))
                options.append(("race", True, 0.0))
            else:
                options.append(("plain", False, 0.0))
            for kind, hedge, after in options:
                s = self._score(costs, dev, bits, hedge, after, lam)
                if best is None or s < best[4] - 1e-12:
                    best = (e.plan, hedge, after, kind, s)
        return best

    def _score(self, costs: list[tuple[float, float, float, float]], dev: float, bits: float,
               hedge: bool, after: float, lam: float) -> float:
        local, pc, pr, wj = self.local_s, self.power_c, self.power_r, self.energy_s_per_j
        wait = self._wait
        scores = []
        for c, r, w, gain in costs:
            lat, cpu, busy = c, dev, dev  # latency, device compute, processor held
            if hedge:
                lat = min(c, local + after)
                if lat > dev + after:  # the processor is held through the wait too
                    cpu, busy = lat - after, lat
            link = bits / r
            s = lat + wj * (pc * cpu + pr * (min(link, lat) if hedge else link))
            if lam > 0.0:
                s += lam * (busy * min(wait + busy / 2, local)
                            + link * min(wait + link / 2, gain))
            scores.append((s, w))
        if self.quantile is None:
            return math.fsum(s * w for s, w in scores)
        return weighted_quantile(scores, self.quantile)
