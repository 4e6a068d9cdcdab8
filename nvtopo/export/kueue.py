"""Kueue's ``Topology`` object: the node-label levels its topology-aware scheduling reads.

Fields as Kueue v0.17 defines them (``sigs.k8s.io/kueue`` ``apis/kueue/v1beta2``,
``topology_types.go``; v1beta2 is its storage version): a cluster-scoped ``Topology`` whose
``spec.levels`` (1–16 items, unique, immutable) each name a ``nodeLabel``, top level first,
``kubernetes.io/hostname`` only as the last. A ResourceFlavor names the Topology in
``spec.topologyName``; a workload asks for one domain with the pod-template annotation
``kueue.x-k8s.io/podset-required-topology: topology.nvtopo.dev/clique``.
"""

from __future__ import annotations

from typing import Any

from nvtopo.export.levels import Layout, layout
from nvtopo.model import Cluster

__all__ = ["KUEUE_API_VERSION", "kueue_topology"]

KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta2"


def kueue_topology(cluster: Cluster | Layout, *, name: str = "nvtopo") -> dict[str, Any]:
    """The ``Topology`` for ``cluster``: rack and clique levels from the fabric, then host.

    Examples
    --------
    >>> import nvtopo
    >>> t = kueue_topology(nvtopo.cluster("gb200-nvl72x2"))
    >>> [level["nodeLabel"] for level in t["spec"]["levels"]]
    ['topology.nvtopo.dev/rack', 'topology.nvtopo.dev/clique', 'kubernetes.io/hostname']
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "Topology",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "nvtopo"}},
        "spec": {"levels": [{"nodeLabel": key} for key in lay.levels]},
    }
