"""One Kubernetes client for every product: configuration, timeouts, retries of 409/429/5xx
with Retry-After, one error line (:mod:`nvtopo.kube.client`, :mod:`nvtopo.kube.retry`), and
the cluster read back from ResourceSlices and ResourceClaims (:mod:`nvtopo.kube.readback`),
and one watched view of both that the allocator and the placement service share
(:mod:`nvtopo.kube.view`).

:mod:`kubernetes` is imported only when a client is made, never by ``import nvtopo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nvtopo.model import Cluster

__all__ = ["cluster_from_kubernetes"]


def cluster_from_kubernetes(api_client: Any, *, driver: str = "gpu.nvtopo.dev") -> Cluster:
    """Read the cluster back from the API server: nodes and topologies from the driver's
    ResourceSlices, free GPUs from every ResourceClaim allocation
    (:func:`nvtopo.kube.readback.cluster_from_kubernetes`)."""
    from nvtopo.kube.readback import cluster_from_kubernetes as read

    return read(api_client, driver=driver)
