"""The placement service (DESIGN, Contract 4): ``nvtopo serve`` and its Python client.

gRPC ``nvtopo.v1.PlacementService`` (``proto/nvtopo/v1/placement.proto``): ``Select``,
``Place``, ``Reserve``/``Release``, ``Explain``, ``WatchCapacity``, with the standard health
and reflection services. State comes from a cluster file or from Kubernetes
(:class:`nvtopo.kube.view.ClusterView`).
"""

from __future__ import annotations

from nvtopo.service.client import Capacity, Client, Explanation, Held, ServiceError
from nvtopo.service.server import SERVICE_NAME, PlacementServer, Tls
from nvtopo.service.state import PlacementState, Reservation

__all__ = [
    "SERVICE_NAME",
    "Capacity",
    "Client",
    "Explanation",
    "Held",
    "PlacementServer",
    "PlacementState",
    "Reservation",
    "ServiceError",
    "Tls",
]
