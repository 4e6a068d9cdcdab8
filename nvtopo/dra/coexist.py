"""Two DRA drivers must never publish the same GPU: the check the node agent makes at start.

NVIDIA's DRA driver (``gpu.nvidia.com``) publishes each GPU with a ``uuid`` attribute, as
nvtopo does. When another driver's ResourceSlices on this node carry a UUID that nvtopo
is about to publish, the scheduler could hand one GPU to two pods; the agent refuses to
start and names that driver (turn its GPU kubelet plugin off, keep its ComputeDomain part).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nvtopo.dra.attributes import device_uuid
from nvtopo.exceptions import NvtopoError
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError, api_message

__all__ = ["SharedGpuError", "check_no_shared_gpus", "slice_uuids"]


class SharedGpuError(NvtopoError):
    """Another DRA driver already publishes some of this node's GPUs."""


def slice_uuids(manifest: Mapping[str, Any]) -> set[str]:
    """The GPU UUIDs a ResourceSlice publishes (attribute ``uuid``, or ``<domain>/uuid``)."""
    devices = (manifest.get("spec") or {}).get("devices") or []
    return {uuid for device in devices if (uuid := device_uuid(device)) is not None}


def check_no_shared_gpus(
    api_client: Any, node: str, driver: str, slices: Iterable[Mapping[str, Any]]
) -> None:
    """Raise :class:`SharedGpuError` when another driver's slices on ``node`` share a GPU.

    ``slices`` are the manifests about to be published for ``node``. One LIST of the node's
    slices (every driver), by field selector.
    """
    ours: set[str] = set()
    for manifest in slices:
        ours |= slice_uuids(manifest)
    if not ours:
        return
    from kubernetes.client.exceptions import ApiException

    api = RawApi(api_client)
    what = f"list ResourceSlices of node {node}"
    try:
        found = list(api.list(RESOURCE_SLICES, what=what, field_selector=f"spec.nodeName={node}"))
    except ApiException as exc:
        if exc.status == 403:
            return  # no list permission at all: the publish that follows says so in its words
        raise KubeApiError(f"{what}: {api_message(exc)}", status=exc.status) from None
    shared: dict[str, set[str]] = {}
    for other in found:
        theirs = (other.get("spec") or {}).get("driver")
        if theirs == driver or not theirs:
            continue
        common = slice_uuids(other) & ours
        if common:
            shared.setdefault(str(theirs), set()).update(common)
    if shared:
        name, gpus = sorted(shared.items())[0]
        more = f" (and drivers {', '.join(sorted(shared)[1:])})" if len(shared) > 1 else ""
        raise SharedGpuError(
            f"node {node}: DRA driver {name}{more} already publishes GPU "
            f"{', '.join(sorted(gpus))}; nvtopo ({driver}) will not publish the same GPUs. "
            f"Turn off {name}'s GPU kubelet plugin (keep its ComputeDomain part) or stop nvtopo "
            "on this node"
        )
