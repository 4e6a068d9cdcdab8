"""From a gang and the free GPUs to each claim's ``status.allocation``.

The gang of ``n`` pods with ``k`` GPUs each is one Contract 2 request (``n × k`` GPUs on
``n`` nodes, the gang's domain rule), placed by :class:`nvtopo.place.ClusterState`, which
takes Contract 1's set on each node among the GPUs really free. With a ``segment`` of
``S`` nodes, the gang is ``n / S`` requests of ``S`` nodes each with domain ``required``,
placed one after the other on the same state (each best fit at its turn); if one cannot be
placed the whole gang is refused.

Pods take the placed nodes in name order; on its node a pod's requests take its GPUs in
ascending order, one request after the other.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nvtopo.allocator.gang import Gang, GangError
from nvtopo.allocator.inventory import Inventory
from nvtopo.exceptions import InfeasibleError
from nvtopo.place import Allocation, ClusterState, Placement, PlacementRequest

__all__ = ["ClaimAllocation", "GangPlan", "allocation_result", "plan_gang"]


@dataclass(frozen=True)
class ClaimAllocation:
    """What one claim gets: its node and ``(request, driver, pool, device)`` results."""

    namespace: str
    claim: str
    node: str
    results: tuple[tuple[str, str, str, str], ...]

    def status(self) -> dict[str, Any]:
        """The claim's ``status.allocation`` (a ``resource.k8s.io/v1`` AllocationResult)."""
        return allocation_result(self.node, self.results)

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "node": self.node, "results": [list(r) for r in self.results]}


def allocation_result(node: str, results: tuple[tuple[str, str, str, str], ...]) -> dict[str, Any]:
    """An AllocationResult: the devices, a node selector naming ``node``, and the time.

    The time matters: where binding conditions are on (v1.37's default gates), the
    scheduler stamps ``allocationTimestamp`` into an allocation that lacks it when it adds
    the pod to ``reservedFor``, and the apiserver refuses that change of an allocation made
    elsewhere, so the pod would never bind. v1.34 knows the field too (alpha there; an
    apiserver with the gate off drops it).
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "allocationTimestamp": stamp,
        "devices": {
            "results": [
                {"request": r, "driver": d, "pool": p, "device": dev} for r, d, p, dev in results
            ]
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


@dataclass(frozen=True)
class GangPlan:
    """Where each pod of a gang goes and what each of its claims gets."""

    gang: Gang
    pods: Mapping[str, str]
    claims: tuple[ClaimAllocation, ...]
    placements: tuple[Placement, ...]


def _place(state: ClusterState, gang: Gang, per_pod: int) -> list[Allocation]:
    n = gang.size
    if gang.segment is None:
        request = PlacementRequest(n * per_pod, nodes=n, domain=gang.domain)  # type: ignore[arg-type]
        return [state.allocate(request)]
    if n % gang.segment:
        raise GangError(f"gang {gang.key}: {n} pods do not split into segments of {gang.segment}")
    done: list[Allocation] = []
    try:
        for _ in range(n // gang.segment):
            request = PlacementRequest(
                gang.segment * per_pod, nodes=gang.segment, domain="required"
            )
            done.append(state.allocate(request))
    except InfeasibleError as exc:
        for a in done:
            state.release(a)
        raise InfeasibleError(
            f"segment {len(done) + 1} of {n // gang.segment} ({gang.segment} nodes): {exc}"
        ) from None
    return done


def plan_gang(inventory: Inventory, gang: Gang, state: ClusterState | None = None) -> GangPlan:
    """Place ``gang`` on ``inventory``'s free GPUs (committing it in ``state`` if given).

    Raises
    ------
    InfeasibleError
        No placement; the message says why (as :meth:`ClusterState.place` does).
    GangError
        The gang's pods cannot be read as one request.
    """
    per_pod = gang.gpus_per_pod
    if per_pod == 0:
        return GangPlan(gang, {}, (), ())
    state = state if state is not None else ClusterState(inventory.cluster)
    allocations = _place(state, gang, per_pod)
    placements = tuple(a.placement for a in allocations)
    placed = [n for p in placements for n in p.nodes]
    members = sorted(gang.members, key=lambda m: m.name)
    pods: dict[str, str] = {}
    claims: dict[str, list[tuple[str, str, str, str]]] = {}
    nodes_of: dict[str, str] = {}
    for member, node in zip(members, placed, strict=True):
        pods[member.name] = node.name
        gpus = list(node.gpus)
        for request in member.requests:
            taken, gpus = gpus[: request.count], gpus[request.count :]
            for gpu in taken:
                dev = inventory.devices[node.name][gpu]
                claims.setdefault(request.claim, []).append(
                    (request.name, dev.driver, dev.pool, dev.name)
                )
            if nodes_of.setdefault(request.claim, node.name) != node.name:
                raise GangError(f"claim {request.claim} is shared by pods on different nodes")
    return GangPlan(
        gang,
        pods,
        tuple(
            ClaimAllocation(gang.namespace, c, nodes_of[c], tuple(r))
            for c, r in sorted(claims.items())
        ),
        placements,
    )
