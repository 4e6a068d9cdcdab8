"""A cluster: nodes, each in at most one NVLink domain (clique), with their free GPUs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from nvtopo.exceptions import TopologyError
from nvtopo.model import ZERO_CLUSTER_UUID, NodeTopology

__all__ = ["Cluster", "ClusterNode"]


@dataclass(frozen=True)
class ClusterNode:
    """One node of a cluster.

    ``clique`` is the declared NVLink domain (``"<clusterUUID>.<cliqueId>"``) or None.
    ``free_gpus`` lists the GPU indices not in use; None means every GPU is free.
    """

    name: str
    topology: NodeTopology
    clique: str | None = None
    free_gpus: tuple[int, ...] | None = None
    #: True where the node already hosts a ComputeDomain (one IMEX channel per node today).
    in_compute_domain: bool = False

    def __post_init__(self) -> None:
        if self.free_gpus is not None:
            known = set(self.topology.gpu_indices)
            bad = [g for g in self.free_gpus if g not in known]
            if bad:
                raise TopologyError(f"node {self.name}: free GPU {bad[0]} is not on the node")

    @property
    def domain(self) -> str | None:
        """The clique this node counts in, after the health rule; None: its own domain.

        A declared clique counts unless it names the all-zero cluster UUID (a fabric that
        was never set up) or the node's own fabric info rules it out (a GPU whose fabric
        state is not Completed, an all-zero cluster UUID, or Unhealthy health).
        """
        fabrics = [g.fabric for g in self.topology.gpus if g.fabric is not None]
        if fabrics and any(f.clique is None for f in fabrics):
            return None
        if self.clique is not None:
            return None if self.clique.startswith(ZERO_CLUSTER_UUID) else self.clique
        return self.topology.clique

    @property
    def free(self) -> tuple[int, ...]:
        if self.free_gpus is None:
            return self.topology.gpu_indices
        return tuple(sorted(self.free_gpus))


@dataclass(frozen=True)
class Cluster:
    """Nodes grouped by NVLink domain.

    Examples
    --------
    >>> import nvtopo
    >>> c = nvtopo.cluster("gb200-nvl72x2")
    >>> len(c.nodes), len(c.cliques)
    (36, 2)
    """

    nodes: tuple[ClusterNode, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise TopologyError(f"node {n.name!r} appears twice in the cluster")
            seen.add(n.name)

    def __iter__(self) -> Iterator[ClusterNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def _by_name(self) -> dict[str, ClusterNode]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> ClusterNode:
        try:
            return self._by_name[name]
        except KeyError:
            raise TopologyError(f"no node {name!r} in the cluster") from None

    @cached_property
    def cliques(self) -> dict[str, tuple[str, ...]]:
        """Multi-node domains: clique id → node names (sorted). Nodes without one are left out."""
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            d = n.domain
            if d is not None:
                groups.setdefault(d, []).append(n.name)
        return {k: tuple(sorted(v)) for k, v in sorted(groups.items())}

    @property
    def gpu_count(self) -> int:
        return sum(len(n.topology.gpus) for n in self.nodes)

    @classmethod
    def from_nodes(cls, nodes: Iterable[ClusterNode], name: str | None = None) -> Cluster:
        return cls(tuple(nodes), name=name)

    @classmethod
    def from_json(cls, data: str | bytes | dict[str, Any], *, source: str = "<json>") -> Cluster:
        """Read the ``nvtopo.dev/v1`` ``Cluster`` JSON format."""
        from nvtopo.jsonio import cluster_from_json

        return cluster_from_json(data, source=source)

    @classmethod
    def from_kubernetes(cls, api_client: Any, *, driver: str = "gpu.nvtopo.dev") -> Cluster:
        """Read the cluster back from the API server: nodes and topologies from the driver's
        ResourceSlices, free GPUs from ResourceClaim allocations
        (:func:`nvtopo.dra.readback.cluster_from_kubernetes`)."""
        from nvtopo.dra.readback import cluster_from_kubernetes

        return cluster_from_kubernetes(api_client, driver=driver)

    def to_json(self) -> dict[str, Any]:
        from nvtopo.jsonio import cluster_to_json

        return cluster_to_json(self)
