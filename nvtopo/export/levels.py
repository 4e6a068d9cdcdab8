"""Where each node sits: its NVLink domain (clique), its rack, and the order of those levels.

Every scheduler format is written from the one :class:`Layout` computed here, so the labels,
the ``Topology`` objects, the HyperNodes, the Slurm blocks and Topograph's model agree.

- The clique is the node's domain after the model's one health rule
  (:attr:`nvtopo.model.ClusterNode.domain`): a node whose fabric is not Completed, whose
  cluster UUID is all zeros or whose health is Unhealthy is in no clique.
- The rack is the chassis serial number that every GPU of the node reports
  (``nvmlDeviceGetPlatformInfo``, GB200/GB300 trays); unknown elsewhere.
- The order comes from the fabric: the rack is above the clique when every clique lies inside
  one rack (NVL72: a rack is one NVLink domain, or is split into several partitions), below
  it when every rack lies inside one clique (an NVLink domain of several racks); a rack level
  that is neither is left out, since a level must nest in the one above it. No network tier
  (leaf, spine switches) is in the model today, so none is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from nvtopo.model import Cluster, ClusterNode

__all__ = [
    "CLIQUE_LABEL",
    "HOSTNAME_LABEL",
    "RACK_LABEL",
    "Layout",
    "NodePlace",
    "label_value",
    "layout",
    "node_rack",
]

#: nvtopo's own node labels: the node's NVLink domain and its rack.
CLIQUE_LABEL = "topology.nvtopo.dev/clique"
RACK_LABEL = "topology.nvtopo.dev/rack"
#: The kubelet's own label, the lowest level of every ``Topology`` object.
HOSTNAME_LABEL = "kubernetes.io/hostname"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_BAD = re.compile(r"[^-A-Za-z0-9_.]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 characters, alphanumeric at both ends.

    Characters a label value cannot hold become ``-``; a value still too long becomes
    ``h`` and 16 hex digits of its SHA-256, the same for the same text.

    Examples
    --------
    >>> label_value("1821 000000007")
    '1821-000000007'
    >>> len(label_value("x" * 80))
    17
    """
    value = _BAD.sub("-", text).strip("-_.")
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        value = "h" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return value


def node_rack(node: ClusterNode) -> str | None:
    """The chassis serial number every GPU of ``node`` reports, or None."""
    serials = {
        g.platform.chassis_serial if g.platform is not None else None for g in node.topology.gpus
    }
    if len(serials) != 1:
        return None
    serial = serials.pop()
    return label_value(serial) if serial else None


@dataclass(frozen=True)
class NodePlace:
    """One node's place: name, clique (None: its own domain), rack (None: unknown)."""

    name: str
    clique: str | None
    rack: str | None
    #: GPUs on the node (Slurm and Topograph want capacities, Volcano does not).
    gpus: int = 0
    #: The GPU product, where the node reports one (Topograph's block type).
    product: str | None = None


RackOrder = Literal["above", "below", "none"]


@dataclass(frozen=True)
class Layout:
    """Every node's place and where the rack level goes relative to the clique."""

    nodes: tuple[NodePlace, ...]
    #: ``above``: racks hold cliques; ``below``: cliques hold racks; ``none``: no rack level.
    rack: RackOrder

    @property
    def cliques(self) -> dict[str, tuple[str, ...]]:
        """Clique → its node names, sorted; nodes in no clique are left out."""
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.clique is not None:
                groups.setdefault(n.clique, []).append(n.name)
        return {k: tuple(sorted(v)) for k, v in sorted(groups.items())}

    @property
    def racks(self) -> dict[str, tuple[str, ...]]:
        """Rack → its node names, sorted (only with a rack level)."""
        if self.rack == "none":
            return {}
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.rack is not None:
                groups.setdefault(n.rack, []).append(n.name)
        return {k: tuple(sorted(v)) for k, v in sorted(groups.items())}

    def clique_rack(self, clique: str) -> str | None:
        """The rack that holds ``clique`` when racks are above cliques, else None."""
        if self.rack != "above":
            return None
        return next((n.rack for n in self.nodes if n.clique == clique), None)

    @property
    def levels(self) -> tuple[str, ...]:
        """Node-label keys of the levels, top down, ending in the host name."""
        keys: list[str] = []
        if self.rack == "above":
            keys.append(RACK_LABEL)
        if any(n.clique is not None for n in self.nodes):
            keys.append(CLIQUE_LABEL)
        if self.rack == "below":
            keys.append(RACK_LABEL)
        keys.append(HOSTNAME_LABEL)
        return tuple(keys)


def _nests(inner: dict[str, set[str]]) -> bool:
    """True when every group of ``inner`` (group → outer values) has one outer value."""
    return all(len(outer) == 1 for outer in inner.values())


def layout(cluster: Cluster) -> Layout:
    """The :class:`Layout` of ``cluster`` (see the module text for the rules).

    Examples
    --------
    >>> import nvtopo
    >>> lay = layout(nvtopo.cluster("gb200-nvl72x2"))
    >>> lay.rack, lay.levels
    ('above', ('topology.nvtopo.dev/rack', 'topology.nvtopo.dev/clique', 'kubernetes.io/hostname'))
    """
    places = []
    for n in sorted(cluster.nodes, key=lambda n: n.name):
        products = {g.name for g in n.topology.gpus if g.name}
        places.append(
            NodePlace(
                name=n.name,
                clique=n.domain,
                rack=node_rack(n),
                gpus=len(n.topology.gpus),
                product=products.pop() if len(products) == 1 else None,
            )
        )
    with_rack = [p for p in places if p.rack is not None]
    in_clique = [p for p in places if p.clique is not None]
    order: RackOrder = "none"
    if with_rack and in_clique and all(p.rack is not None for p in in_clique):
        racks_of: dict[str, set[str]] = {}
        cliques_of: dict[str, set[str]] = {}
        for p in places:
            if p.clique is not None and p.rack is not None:
                racks_of.setdefault(p.clique, set()).add(p.rack)
            if p.rack is not None:
                cliques_of.setdefault(p.rack, set()).add(p.clique or f"\0{p.name}")
        if _nests(racks_of):
            order = "above"
        elif _nests(cliques_of):
            order = "below"
    elif with_rack and not in_clique:
        order = "above"
    return Layout(tuple(places), order)
