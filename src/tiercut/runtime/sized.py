"""Requests of many sizes: one plan, and one SplitClient, per size.

The design is RE-PLAN PER SIZE. A plan is made for one input shape (the servers build and
check their stage at the plan's ``batch`` / ``input_shape``), and where to cut moves with size:
a batch of 1 may be best on the device and a batch of 16 best offloaded. So ``SizedClient``
asks ``plan_for(size)`` for a StagePlan the first time a request of that size arrives, opens a
SplitClient for it, and routes every later request of that size there. ``SizePlanner`` is a
``plan_for`` that plans each size from costs interpolated between a few profiled sizes
(``tiercut.measure.sizes.SizedProfiles.at``), so a size never profiled still gets its own plan.

The runtime imports neither the planner nor the profiles: ``SizePlanner`` takes the planner's
``plan`` function and any object with ``at(size) -> Profile`` from its caller::

    from tiercut.planner import plan
    planner = SizePlanner("mobilenet_v2", sized, scenario_for, plan)
    with SizedClient("mobilenet_v2", planner, {"edge": "10.0.0.2:50051"}) as client:
        out, m = client.infer(x)          # x of any batch
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Mapping

import torch

from .client import SplitClient
from .hosts import Endpoints
from .measurement import Measurement
from .stageplan import StagePlan


def batch_of(inputs: tuple[torch.Tensor, ...]) -> int:
    """The default size of a request: its first input's first dimension."""
    return int(inputs[0].shape[0])


class SizedClient:
    """Serve ``model`` at any size: ``plan_for(size)`` gives the size's StagePlan, made (with
    its SplitClient) the first time a request of that size arrives.

    ``endpoints``: tier -> host:port (or a list of hosts) for every tier any size's plan may
    use; each size's client gets the tiers its plan visits. A list is taken as one per tier
    after the device, for plans that all visit the same tiers. ``size_of(inputs)``: a
    request's size (default: the batch). Other keywords go to every SplitClient (codec,
    deadline_s, ...). Clients stay open until ``close()``.
    """

    def __init__(self, model: str, plan_for: Callable[[int], StagePlan], endpoints: Endpoints,
                 size_of: Callable[[tuple[torch.Tensor, ...]], int] = batch_of,
                 **client_kwargs: Any):
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a model name like 'mobilenet_v2', got {model!r}")
        self.model, self.plan_for, self.endpoints = model, plan_for, endpoints
        self.size_of, self.client_kwargs = size_of, client_kwargs
        self._clients: dict[int, SplitClient] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def sizes(self) -> tuple[int, ...]:
        """The sizes served so far, each with its own plan and client."""
        return tuple(sorted(self._clients))

    def plan(self, size: int) -> StagePlan:
        """The plan requests of ``size`` run (made now if none has arrived yet)."""
        return self.client(size).plan

    def client(self, size: int) -> SplitClient:
        """The SplitClient of ``size``, opened on first use."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r} (from size_of)")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"SizedClient of {self.model!r} is closed")
            if size not in self._clients:
                self._clients[size] = self._open(size)
            return self._clients[size]

    def infer(self, *inputs: torch.Tensor, **kwargs: Any) -> tuple[Any, Measurement]:
        """Run one request on its size's plan: (outputs, measurement) as SplitClient.infer."""
        if not inputs:
            raise ValueError(f"{self.model!r}: infer needs the model's inputs, got none")
        return self.client(self.size_of(inputs)).infer(*inputs, **kwargs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()

    def __enter__(self) -> "SizedClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open(self, size: int) -> SplitClient:
        plan = self.plan_for(size)
        if not isinstance(plan, StagePlan):
            raise TypeError(f"plan_for({size}) returned {type(plan).__name__}; it must return "
                            "a StagePlan")
        if plan.model != self.model:
            raise ValueError(f"plan_for({size}) planned model {plan.model!r}, not "
                             f"{self.model!r}")
        endpoints = self.endpoints
        if isinstance(endpoints, Mapping):  # only the tiers this size's plan visits
            missing = [t for t in plan.tiers[1:] if t not in endpoints]
            if missing:
                raise ValueError(f"size {size}'s plan runs on tiers {list(plan.tiers)}; "
                                 f"endpoints give no host for {missing} (they give "
                                 f"{sorted(endpoints)})")
            endpoints = {t: endpoints[t] for t in plan.tiers[1:]}
        return SplitClient(plan, endpoints, **self.client_kwargs)


class SizePlanner:
    """``plan_for`` from interpolated costs: size -> the planner's plan at that size.

    ``sized.at(size)`` (a ``SizedProfiles``) gives the device's profile at ``size``;
    ``scenario_for(profile, size)`` builds the Scenario to plan (its hosts' profiles at that
    size, e.g. ``scale_profile`` of it per tier); ``plan(scenario)`` is
    ``tiercut.planner.plan`` (or a partial of it with an objective and constraints). For
    ``dimension="batch"`` the StagePlan carries ``batch=size``; otherwise give
    ``input_shape_of(size)`` (a ``module:factory`` model's one input shape at that size) or
    ``inputs_of(size)``: the model's ``--input`` specs at that size, which the plan carries to
    the servers (a zoo or ``hf:`` model at another sequence length).
    Plans are kept per size.
    """

    def __init__(self, model: str, sized: Any, scenario_for: Callable[[Any, int], Any],
                 plan: Callable[[Any], Any], dimension: str = "batch",
                 input_shape_of: Callable[[int], tuple[int, ...]] | None = None,
                 peers: Mapping[str, str] | None = None,
                 inputs_of: Callable[[int], list[str]] | None = None):
        if dimension != "batch" and input_shape_of is None and inputs_of is None:
            raise ValueError(f"dimension {dimension!r}: give input_shape_of(size) (a "
                             "module:factory model's one input shape) or inputs_of(size) (the "
                             "model's --input specs at each size)")
        self.inputs_of = inputs_of
        self.model, self.sized, self.scenario_for, self.planner = model, sized, scenario_for, plan
        self.dimension, self.input_shape_of, self.peers = dimension, input_shape_of, peers
        self._plans: dict[int, Any] = {}
        self._lock = threading.Lock()

    def plan(self, size: int) -> Any:
        """The planner's Plan at ``size`` (its ``total_s`` is the predicted latency)."""
        with self._lock:
            if size not in self._plans:
                profile = self.sized.at(size)
                self._plans[size] = self.planner(self.scenario_for(profile, size))
            return self._plans[size]

    def __call__(self, size: int) -> StagePlan:
        chosen = self.plan(size)
        shape = self.input_shape_of(size) if self.input_shape_of else None
        stage_plan = StagePlan.from_plan_dict(chosen.to_dict(), shape, self.peers)
        return dataclasses.replace(stage_plan, model=self.model,
                                   batch=size if self.dimension == "batch" else None,
                                   inputs=tuple(self.inputs_of(size)) if self.inputs_of else None)
