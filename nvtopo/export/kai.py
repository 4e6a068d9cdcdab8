"""KAI Scheduler's ``Topology`` object.

Fields from KAI Scheduler's published API (NVIDIA/KAI-Scheduler,
``pkg/apis/kai/v1alpha1/topology_types.go``): group ``kai.scheduler``, version
``v1alpha1``, kind ``Topology``, cluster-scoped; ``spec.levels`` is a list (1–16, unique,
immutable) of ``{nodeLabel: string}`` (required, 1–316 characters, a label key), top level
first, with ``kubernetes.io/hostname`` allowed only as the last level. A workload names it
through its PodGroup's topology constraint (``kai.scheduler/topology`` and
``kai.scheduler/topology-required-placement: topology.nvtopo.dev/clique`` annotations).
KAI's Go module is not served to this project's builds, so the tests check these objects
against those facts and through the apiserver with a CRD written from them.
"""

from __future__ import annotations

from typing import Any

from nvtopo.export.levels import Layout, layout
from nvtopo.model import Cluster

__all__ = ["KAI_API_VERSION", "kai_topology"]

KAI_API_VERSION = "kai.scheduler/v1alpha1"


def kai_topology(cluster: Cluster | Layout, *, name: str = "nvtopo") -> dict[str, Any]:
    """The KAI ``Topology`` for ``cluster`` (same levels as Kueue's).

    Examples
    --------
    >>> import nvtopo
    >>> kai_topology(nvtopo.cluster("gb200-nvl72x2"))["apiVersion"]
    'kai.scheduler/v1alpha1'
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    return {
        "apiVersion": KAI_API_VERSION,
        "kind": "Topology",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "nvtopo"}},
        "spec": {"levels": [{"nodeLabel": key} for key in lay.levels]},
    }
