"""Between the service's protobuf messages and nvtopo's Python results.

Requests are checked here, field by field, so that a bad one is refused with
``INVALID_ARGUMENT`` naming the field (``request.gpus: must be at least 1, got -3``) before
anything reaches the core.
"""

from __future__ import annotations

from typing import Any

from nvtopo.exceptions import SelectionError
from nvtopo.place import Domain, PlacedNode, Placement, PlacementRequest
from nvtopo.select import Selection
from nvtopo.service._proto import placement_pb2 as pb
from nvtopo.service.explain import CliqueVerdict
from nvtopo.service.state import MAX_TTL, CliqueLoad, Reservation

__all__ = [
    "DOMAINS",
    "capacity_message",
    "placement_from_message",
    "placement_message",
    "placement_request",
    "request_message",
    "reservation_message",
    "selection_message",
    "ttl_seconds",
    "verdict_message",
]

#: Protobuf enum value → Contract 2 domain rule (UNSPECIFIED means preferred).
DOMAINS: dict[int, Domain] = {
    pb.DOMAIN_UNSPECIFIED: "preferred",
    pb.DOMAIN_REQUIRED: "required",
    pb.DOMAIN_PREFERRED: "preferred",
    pb.DOMAIN_NONE: "none",
}
_DOMAIN_VALUES = {"required": pb.DOMAIN_REQUIRED, "preferred": pb.DOMAIN_PREFERRED,
                  "none": pb.DOMAIN_NONE}  # fmt: skip
_VERDICTS = {
    "taken": pb.VERDICT_TAKEN,
    "ranked_lower": pb.VERDICT_RANKED_LOWER,
    "too_few_free_nodes": pb.VERDICT_TOO_FEW_FREE_NODES,
    "unhealthy_fabric": pb.VERDICT_UNHEALTHY_FABRIC,
    "spares_held": pb.VERDICT_SPARES_HELD,
    "in_compute_domain": pb.VERDICT_IN_COMPUTE_DOMAIN,
}


def placement_request(parent: Any, field: str = "request") -> PlacementRequest:
    """The :class:`PlacementRequest` in ``parent.<field>``, checked field by field."""
    if not parent.HasField(field):
        raise SelectionError(f"{field}: required")
    m = getattr(parent, field)
    if m.gpus < 1:
        raise SelectionError(f"{field}.gpus: must be at least 1, got {m.gpus}")
    if m.nodes < 0:
        raise SelectionError(
            f"{field}.nodes: must be 0 (as few as possible) or more, got {m.nodes}"
        )
    if m.nodes and m.gpus % m.nodes:
        raise SelectionError(
            f"{field}.nodes: {m.gpus} GPUs do not split evenly over {m.nodes} nodes"
        )
    if m.domain not in DOMAINS:
        raise SelectionError(f"{field}.domain: unknown value {m.domain}")
    return PlacementRequest(m.gpus, m.nodes or None, DOMAINS[m.domain])


def request_message(r: PlacementRequest) -> Any:
    """The protobuf ``PlacementRequest`` of ``r``."""
    return pb.PlacementRequest(gpus=r.gpus, nodes=r.nodes or 0, domain=_DOMAIN_VALUES[r.domain])


def ttl_seconds(value: int) -> int:
    """``value`` if it is a valid TTL (1 s to a day), else SelectionError naming the field."""
    if not 1 <= value <= MAX_TTL:
        raise SelectionError(f"ttl_seconds: must be 1 to {MAX_TTL}, got {value}")
    return value


def placement_message(p: Placement) -> Any:
    """The protobuf ``Placement`` of ``p`` (the fields of :meth:`Placement.to_json`)."""
    return pb.Placement(
        nodes=[pb.PlacedNode(name=n.name, gpus=n.gpus) for n in p.nodes],
        cliques=p.cliques,
        compute_domain=p.compute_domain,
        gpu_count=p.gpu_count,
        explanation=p.explain(),
    )


def placement_from_message(m: Any) -> Placement:
    """The :class:`Placement` a protobuf ``Placement`` carries."""
    return Placement(
        tuple(PlacedNode(n.name, tuple(n.gpus)) for n in m.nodes),
        tuple(m.cliques),
        m.compute_domain,
    )


def selection_message(s: Selection) -> Any:
    """The protobuf ``Selection`` of ``s`` (the fields of :meth:`Selection.to_json`)."""
    return pb.Selection(
        gpus=s.gpus,
        bottleneck=s.bottleneck,
        bottleneck_pair=s.bottleneck_pair or (),
        bottleneck_path=s.bottleneck_path or "",
        total=s.total,
        numa_keys=s.numa_keys,
        cut=s.cut,
        remaining=s.remaining,
        optimal=s.optimal,
        explanation=s.explain(),
    )


def reservation_message(r: Reservation) -> Any:
    """The protobuf ``Reservation`` of ``r``."""
    return pb.Reservation(
        id=r.id,
        idempotency_key=r.idempotency_key,
        placement=placement_message(r.placement),
        expires_unix_ms=0 if r.expires is None else int(r.expires * 1000),
    )


def verdict_message(v: CliqueVerdict) -> Any:
    """The protobuf ``CliqueVerdict`` of ``v``."""
    return pb.CliqueVerdict(
        clique=v.clique,
        verdict=_VERDICTS[v.verdict],
        reason=v.reason,
        nodes=v.nodes,
        eligible_nodes=v.eligible_nodes,
        free_gpus=v.free_gpus,
    )


def capacity_message(token: str, loads: tuple[CliqueLoad, ...], free: int, held: int) -> Any:
    """A ``CapacityUpdate``."""
    return pb.CapacityUpdate(
        resume_token=token,
        cliques=[
            pb.CliqueCapacity(
                clique=c.clique,
                nodes=c.nodes,
                free_nodes=c.free_nodes,
                gpus=c.gpus,
                free_gpus=c.free_gpus,
            )
            for c in loads
        ],
        free_gpus=free,
        reservations=held,
    )
