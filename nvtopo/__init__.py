"""nvtopo: a multi-node NVLink/IMEX topology manager.

Discover a node's GPU topology (NVML, ``nvidia-smi`` captures, the embedded system catalog,
JSON files), pick optimal GPU sets with the Rust core, place multi-node jobs inside one
NVLink domain, and publish it all to Kubernetes.

Examples
--------
>>> import nvtopo
>>> topo = nvtopo.system("dgx-h100")
>>> len(topo.gpus)
8
"""

from __future__ import annotations

from nvtopo._core import __version__
from nvtopo.catalog import cluster, system, systems
from nvtopo.discovery.nvml import discover
from nvtopo.exceptions import (
    DiscoveryError,
    InfeasibleError,
    NvtopoError,
    ParseError,
    SelectionError,
    TopologyError,
    UnknownGpuError,
    UnknownSystemError,
)
from nvtopo.model import Fabric, Gpu, GpuPair, Nic, NodeTopology, NvLink, NvSwitch, Platform
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.place import ClusterState, Placement, PlacementRequest, place
from nvtopo.select import Selection, partition, select_gpus

__all__ = [
    "Cluster",
    "ClusterNode",
    "ClusterState",
    "DiscoveryError",
    "Fabric",
    "Gpu",
    "GpuPair",
    "InfeasibleError",
    "Nic",
    "NodeTopology",
    "NvLink",
    "NvSwitch",
    "NvtopoError",
    "ParseError",
    "Placement",
    "PlacementRequest",
    "Platform",
    "Selection",
    "SelectionError",
    "TopologyError",
    "UnknownGpuError",
    "UnknownSystemError",
    "__version__",
    "cluster",
    "discover",
    "partition",
    "place",
    "select_gpus",
    "system",
    "systems",
]
