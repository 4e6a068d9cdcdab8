"""A cluster: nodes, each in at most one NVLink domain (clique), with their free GPUs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from nvtopo.exceptions import TopologyError
from nvtopo.model.health import CliqueVerdict, node_clique
from nvtopo.model.topology import NodeTopology

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

    @cached_property
    def verdict(self) -> CliqueVerdict:
        """The clique rule applied to this node's GPUs and declared clique
        (:func:`nvtopo.model.health.node_clique`)."""
        return node_clique(self.topology, self.clique)

    @property
    def domain(self) -> str | None:
        """The clique this node counts in, after the rule; None: its own single-node domain.

        A declared clique counts only where the node's GPUs agree with it (or carry no fabric
        info at all); :attr:`verdict` says why a node is in none.
        """
        return self.verdict.clique

    @property
    def free(self) -> tuple[int, ...]:
        """The GPUs placement may hand out: not in use (``free_gpus``), and without a health
        finding (:attr:`NodeTopology.unfit_gpus`: such a GPU carries a device taint, so the
        scheduler keeps new claims off it and a clique's usable capacity drops by it)."""
        free = (
            self.topology.gpu_indices if self.free_gpus is None else tuple(sorted(self.free_gpus))
        )
        unfit = self.topology.unfit_gpus
        return tuple(g for g in free if g not in unfit) if unfit else free


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

    @cached_property
    def clique_problems(self) -> dict[str, str]:
        """Node name → why it is in no clique, for nodes whose GPUs or declaration disagree
        or whose fabric is not ready (nodes with no multi-node fabric at all are not listed).

        Examples
        --------
        >>> import nvtopo
        >>> nvtopo.cluster("gb200-nvl72x2").clique_problems
        {}
        """
        return {n.name: n.verdict.reason for n in self.nodes if n.verdict.reason is not None}

    @property
    def gpu_count(self) -> int:
        return sum(len(n.topology.gpus) for n in self.nodes)

    @classmethod
    def from_nodes(cls, nodes: Iterable[ClusterNode], name: str | None = None) -> Cluster:
        return cls(tuple(nodes), name=name)
