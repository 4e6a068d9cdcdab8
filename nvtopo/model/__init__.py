"""The topology model (layer 1): one node's GPUs and links, a cluster of nodes, and the one
clique/health rule that every caller uses.

It imports nothing above it: formats, discovery and Kubernetes read and write these types
from their own modules (:mod:`nvtopo.formats`, :mod:`nvtopo.discovery`, :mod:`nvtopo.kube`).
"""

from __future__ import annotations

from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.model.health import ZERO_CLUSTER_UUID, CliqueVerdict, node_clique
from nvtopo.model.topology import (
    MAX_NVLINKS,
    PCIE_CLASSES,
    Fabric,
    FabricHealth,
    FabricState,
    Gpu,
    GpuPair,
    LinkState,
    Nic,
    NodeTopology,
    NvLink,
    NvSwitch,
    PcieClass,
    Platform,
    RemoteType,
    nvlink_bandwidth,
    parse_path_class,
)

__all__ = [
    "MAX_NVLINKS",
    "PCIE_CLASSES",
    "ZERO_CLUSTER_UUID",
    "CliqueVerdict",
    "Cluster",
    "ClusterNode",
    "Fabric",
    "FabricHealth",
    "FabricState",
    "Gpu",
    "GpuPair",
    "LinkState",
    "Nic",
    "NodeTopology",
    "NvLink",
    "NvSwitch",
    "PcieClass",
    "Platform",
    "RemoteType",
    "node_clique",
    "nvlink_bandwidth",
    "parse_path_class",
]
