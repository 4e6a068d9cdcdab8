"""Volcano ``HyperNode`` objects: tier 1 is one HyperNode per clique.

Fields from Volcano's published API (volcano-sh/apis,
``pkg/apis/topology/v1alpha1/hypernode_types.go``): group ``topology.volcano.sh``, version
``v1alpha1``, kind ``HyperNode``, cluster-scoped; ``spec.tier`` an integer ≥ 0 (lower is
closer), ``spec.tierName`` an optional string (≤ 253), ``spec.members`` a list (≥ 1) of
``{type: Node | HyperNode, selector: {exactMatch: {name}} | {regexMatch: {pattern}} |
{labelMatch: LabelSelector}}`` with exactly one selector, ``exactMatch.name`` a DNS
subdomain. The tests decode these objects strictly with Volcano's own Go types
(``volcano.sh/apis`` v1.14.0) and apply them under the CRD generated from those types.

Names are deterministic: ``nvl-<clusterUUID>-<cliqueId>`` per clique and ``rack-<rack>`` per
rack (tier 2, when racks hold cliques). A node in no clique is in no HyperNode.
"""

from __future__ import annotations

import re
from typing import Any

from nvtopo.export.levels import Layout, layout
from nvtopo.model import Cluster

__all__ = ["VOLCANO_API_VERSION", "clique_object_name", "volcano_hypernodes"]

VOLCANO_API_VERSION = "topology.volcano.sh/v1alpha1"
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def _dns_name(prefix: str, text: str) -> str:
    body = _NOT_DNS.sub("-", text.lower()).strip("-")
    return f"{prefix}-{body}"[:253].rstrip("-")


def clique_object_name(clique: str) -> str:
    """The object name of a clique: ``nvl-<clusterUUID>-<cliqueId>``.

    Examples
    --------
    >>> clique_object_name("6f1c0b1e-8d0a-4a8e-9d55-2b8f1c3e4d5a.32766")
    'nvl-6f1c0b1e-8d0a-4a8e-9d55-2b8f1c3e4d5a-32766'
    """
    return _dns_name("nvl", clique)


def _hypernode(name: str, tier: int, tier_name: str, kind: str, members: list[str]) -> Any:
    return {
        "apiVersion": VOLCANO_API_VERSION,
        "kind": "HyperNode",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "nvtopo"}},
        "spec": {
            "tier": tier,
            "tierName": tier_name,
            "members": [{"type": kind, "selector": {"exactMatch": {"name": m}}} for m in members],
        },
    }


def volcano_hypernodes(cluster: Cluster | Layout) -> list[dict[str, Any]]:
    """The HyperNodes of ``cluster``: cliques (tier 1), then racks above them (tier 2).

    Examples
    --------
    >>> import nvtopo
    >>> hn = volcano_hypernodes(nvtopo.cluster("gb200-nvl72x2"))
    >>> [(h["spec"]["tier"], len(h["spec"]["members"])) for h in hn]
    [(1, 18), (1, 18), (2, 1), (2, 1)]
    """
    lay = cluster if isinstance(cluster, Layout) else layout(cluster)
    out = [
        _hypernode(clique_object_name(c), 1, "clique", "Node", list(nodes))
        for c, nodes in lay.cliques.items()
    ]
    if lay.rack == "above":
        held: dict[str, list[str]] = {}
        for clique in lay.cliques:
            rack = lay.clique_rack(clique)
            if rack is not None:
                held.setdefault(rack, []).append(clique_object_name(clique))
        out.extend(
            _hypernode(_dns_name("rack", rack), 2, "rack", "HyperNode", sorted(members))
            for rack, members in sorted(held.items())
        )
    return out
