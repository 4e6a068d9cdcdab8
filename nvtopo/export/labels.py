"""Node labels: nvtopo's own keys, and the keys of NVIDIA's stack and Topograph.

``nvtopo export --to labels`` prints them as partial Node objects for server-side apply; the
node agent (``nvtopo publish --labels``, :mod:`nvtopo.dra.labels_apply`) applies them itself.

- nvtopo's own keys, always: :data:`~nvtopo.export.levels.CLIQUE_LABEL` and
  :data:`~nvtopo.export.levels.RACK_LABEL`.
- Shared keys, only where no other component owns them (the applier checks the Node's
  managed fields): ``nvidia.com/gpu.clique``, the NVLink domain as NVIDIA's GPU Feature
  Discovery spells it; Topograph's ``accelerator.topograph.run/domain`` and, when racks lie
  inside a multi-rack domain, ``accelerator.topograph.run/sub-domain`` (Topograph v1.0
  names, its docs/k8s.md).

A node in no clique (fabric not Completed, all-zero cluster UUID, Unhealthy) gets no clique
keys: the applier removes the ones it set before.
"""

from __future__ import annotations

from typing import Any

from nvtopo.export.levels import CLIQUE_LABEL, RACK_LABEL, Layout, NodePlace, label_value, layout
from nvtopo.model import Cluster

__all__ = [
    "NVIDIA_CLIQUE_LABEL",
    "OWN_LABELS",
    "SHARED_LABELS",
    "TOPOGRAPH_DOMAIN_LABEL",
    "TOPOGRAPH_SUBDOMAIN_LABEL",
    "label_objects",
    "node_labels",
    "place_labels",
]

NVIDIA_CLIQUE_LABEL = "nvidia.com/gpu.clique"
TOPOGRAPH_DOMAIN_LABEL = "accelerator.topograph.run/domain"
TOPOGRAPH_SUBDOMAIN_LABEL = "accelerator.topograph.run/sub-domain"

#: Keys nvtopo always owns.
OWN_LABELS = (CLIQUE_LABEL, RACK_LABEL)
#: Keys nvtopo sets only where no other field manager holds them.
SHARED_LABELS = (NVIDIA_CLIQUE_LABEL, TOPOGRAPH_DOMAIN_LABEL, TOPOGRAPH_SUBDOMAIN_LABEL)


def place_labels(place: NodePlace, rack_order: str = "above") -> dict[str, str]:
    """The labels one node should carry (keys not returned should be absent)."""
    labels: dict[str, str] = {}
    if place.rack is not None and rack_order != "none":
        labels[RACK_LABEL] = place.rack
    if place.clique is not None:
        clique = label_value(place.clique)
        labels[CLIQUE_LABEL] = clique
        labels[NVIDIA_CLIQUE_LABEL] = clique
        labels[TOPOGRAPH_DOMAIN_LABEL] = clique
        if rack_order == "below" and place.rack is not None:
            labels[TOPOGRAPH_SUBDOMAIN_LABEL] = label_value(f"{clique}.{place.rack}")
    return dict(sorted(labels.items()))


def node_labels(cluster: Cluster | Layout) -> dict[str, dict[str, str]]:
    """Node name → the labels it should carry, for every node of ``cluster``.

    Examples
    --------
    >>> import nvtopo
    >>> labels = node_labels(nvtopo.cluster("gb200-nvl72x2"))
    >>> sorted(labels["rack0000-tray00"])  # doctest: +NORMALIZE_WHITESPACE
    ['accelerator.topograph.run/domain', 'nvidia.com/gpu.clique',
     'topology.nvtopo.dev/clique', 'topology.nvtopo.dev/rack']
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    return {p.name: place_labels(p, lay.rack) for p in lay.nodes}


def label_objects(cluster: Cluster | Layout) -> list[dict[str, Any]]:
    """One partial ``v1`` Node per node: the labels, for ``kubectl apply --server-side``.

    Applied as they are, they take the shared keys too; the node agent leaves out the ones
    another component owns.
    """
    return [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        for name, labels in node_labels(cluster).items()
    ]
