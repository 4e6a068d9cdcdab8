"""Dynamic Resource Allocation (``resource.k8s.io/v1``): what nvtopo publishes to Kubernetes.

- :func:`resource_slices` / :func:`cluster_resource_slices`: ResourceSlice manifests with
  NVIDIA-compatible GPU attributes plus ``topology.nvtopo.dev/`` topology attributes;
- :func:`claim_template`: a ResourceClaimTemplate that makes the stock first-fit allocator
  return a well-connected GPU set;
- :func:`device_classes`: the DeviceClass those claims name;
- :func:`publish`: reconcile a node's (or a cluster's) slices with the API server;
- :mod:`nvtopo.dra.limits`: the API limits, each check usable on its own.

Every manifest is a plain dict, ready for ``yaml.safe_dump`` or the Kubernetes client.

Examples
--------
>>> import nvtopo
>>> from nvtopo import dra
>>> [s] = dra.resource_slices(nvtopo.system("dgx-h100"), node="gpu-node-1")
>>> s["spec"]["devices"][0]["attributes"]["productName"]
{'string': 'NVIDIA H100 80GB HBM3'}
"""

from __future__ import annotations

from nvtopo.dra.attributes import (
    DEFAULT_SET_SIZES,
    STANDARD_DOMAIN,
    TOPOLOGY_DOMAIN,
    gpu_devices,
    partition_groups,
)
from nvtopo.dra.claims import claim_template
from nvtopo.dra.classes import device_classes, device_classes_yaml
from nvtopo.dra.limits import DraLimitError, check_resource_slice
from nvtopo.dra.publish import PublishError, PublishResult, publish
from nvtopo.dra.slices import (
    API_VERSION,
    DEFAULT_DRIVER,
    cluster_resource_slices,
    resource_slices,
    slice_name,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_DRIVER",
    "DEFAULT_SET_SIZES",
    "STANDARD_DOMAIN",
    "TOPOLOGY_DOMAIN",
    "DraLimitError",
    "PublishError",
    "PublishResult",
    "check_resource_slice",
    "claim_template",
    "cluster_resource_slices",
    "device_classes",
    "device_classes_yaml",
    "gpu_devices",
    "partition_groups",
    "publish",
    "resource_slices",
    "slice_name",
]
