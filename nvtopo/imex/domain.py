"""Placing a multi-node NVLink job inside one IMEX domain, after health gating.

:func:`place_domain` is Contract 2 (:func:`nvtopo.place`) on the cluster as the health rule
leaves it: a node in no clique (no multi-node fabric, fabric not ready, GPUs that disagree;
see :func:`clique_reasons`) offers no free GPUs, and so cannot be chosen.
Every node that cannot take part is listed in ``excluded`` with its reasons: fabric or
NVLink trouble, a ComputeDomain already on it, too few free GPUs.

Nodes already in a ComputeDomain are left to Contract 2 itself (a multi-node placement
never uses them), so on a cluster with no fabric or NVLink trouble the placement is exactly
:func:`nvtopo.place`'s. Only where a one-node placement would land on such a node is it
placed again without them, since the caller is about to make a new IMEX domain there.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from nvtopo.exceptions import InfeasibleError
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.model.health import fabric_problems
from nvtopo.place import Domain, Placement, PlacementRequest, place

__all__ = [
    "DomainPlacement",
    "ExcludedNode",
    "clique_reasons",
    "place_domain",
    "summarize_excluded",
]

IN_COMPUTE_DOMAIN = "already in a ComputeDomain"
#: Up to this many excluded nodes are named one by one in a summary; more are counted.
_NAMED = 2
NO_CLIQUE = "not in an NVLink clique"


@dataclass(frozen=True)
class ExcludedNode:
    """A node that cannot take part in the job, and every reason why."""

    name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class DomainPlacement:
    """Where the job goes (``placement``, for ``request``) and which nodes were left out."""

    request: PlacementRequest
    placement: Placement
    excluded: tuple[ExcludedNode, ...]

    @property
    def node_names(self) -> tuple[str, ...]:
        """The placed nodes, in placement order."""
        return tuple(n.name for n in self.placement.nodes)

    @property
    def gpus_per_node(self) -> int:
        """GPUs on each node; the placement is even whenever this is asked of it."""
        counts = {len(n.gpus) for n in self.placement.nodes}
        if len(counts) != 1:
            raise InfeasibleError(f"uneven placement: {sorted(counts)} GPUs per node")
        return counts.pop()


def _reason_kind(reason: str) -> str:
    """The reason without the GPU list, for counting (``GPU 2: fabric …`` → ``fabric …``)."""
    head, sep, tail = reason.partition(": ")
    return tail if sep and head.startswith("GPU") else reason


def summarize_excluded(excluded: Iterable[ExcludedNode]) -> str:
    """``5 nodes excluded (3 fabric state In Progress, 2 already in a ComputeDomain)``; up to
    two nodes are named with their reasons (``1 node excluded (tray3: no free GPUs)``)."""
    nodes = list(excluded)
    if not nodes:
        return "no node excluded"
    noun = "node" if len(nodes) == 1 else "nodes"
    if len(nodes) <= _NAMED:
        # Few enough to say per node what keeps it out.
        each = "; ".join(f"{n.name}: {', '.join(n.reasons)}" for n in nodes)
        return f"{len(nodes)} {noun} excluded ({each})"
    kinds: Counter[str] = Counter()
    for node in nodes:
        kinds.update({_reason_kind(r) for r in node.reasons})
    parts = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    return f"{len(nodes)} {noun} excluded ({parts})"


def _free_reason(node: ClusterNode, share: int | None) -> str | None:
    free = len(node.free)
    if free == 0:
        return "no free GPUs"
    if share is not None and free < share:
        return f"{free} free GPU{'s' if free != 1 else ''}, {share} needed"
    return None


def clique_reasons(node: ClusterNode) -> list[str]:
    """Why ``node`` cannot join a multi-node NVLink (IMEX) domain; empty when it can.

    The model's rule (:attr:`ClusterNode.verdict`, :func:`fabric_problems`): fabric or NVLink
    trouble, GPUs that disagree on the clique, a declared clique the GPUs contradict, or no
    multi-node fabric at all (a DGX H100), in the words of ``nvtopo imex check``.
    """
    problems = list(fabric_problems(node.topology, require_fabric=False))
    if node.domain is None:
        reason = node.verdict.reason
        if reason is not None and not any(reason in p for p in problems):
            problems.append(reason)
        if not problems:
            problems.extend(fabric_problems(node.topology) or (NO_CLIQUE,))
    return problems


def _gate(cluster: Cluster, share: int | None) -> tuple[Cluster, dict[str, list[str]]]:
    """The cluster with nodes that cannot join made busy, and each excluded node's reasons."""
    reasons: dict[str, list[str]] = {}
    nodes: list[ClusterNode] = []
    for node in cluster.nodes:
        problems = clique_reasons(node)
        gated = bool(problems)
        if node.in_compute_domain:
            problems.append(IN_COMPUTE_DOMAIN)
        # A node already kept out by its fabric needs no second reason: its unfit GPUs
        # (a degraded fabric) are what left it short.
        free = None if gated else _free_reason(node, share)
        if free is not None:
            problems.append(free)
        if problems:
            reasons[node.name] = problems
        nodes.append(dataclasses.replace(node, free_gpus=()) if gated else node)
    return Cluster(tuple(nodes), name=cluster.name), reasons


def _without_compute_domains(cluster: Cluster) -> Cluster:
    nodes = tuple(
        dataclasses.replace(n, free_gpus=()) if n.in_compute_domain else n for n in cluster.nodes
    )
    return Cluster(nodes, name=cluster.name)


def _place(cluster: Cluster, request: PlacementRequest, why: dict[str, list[str]]) -> Placement:
    try:
        found = place(cluster, request)
    except InfeasibleError as exc:
        excluded = [ExcludedNode(n, tuple(r)) for n, r in why.items()]
        if len(cluster.nodes) == 1 and excluded:
            # One node: say why it cannot take part, as `nvtopo imex check` would.
            node = excluded[0]
            raise InfeasibleError(
                f"node {node.name} cannot join a multi-node NVLink job: {'; '.join(node.reasons)}"
            ) from None
        raise InfeasibleError(f"{exc}; {summarize_excluded(excluded)}") from None
    busy = {n.name for n in cluster.nodes if n.in_compute_domain}
    if any(n.name in busy for n in found.nodes):
        # A one-node placement may share a node with a ComputeDomain under Contract 2;
        # a new IMEX domain may not.
        return _place(_without_compute_domains(cluster), request, why)
    return found


def place_domain(
    cluster: Cluster,
    *,
    gpus: int,
    nodes: int | None = None,
    domain: Domain = "required",
    even: bool = False,
) -> DomainPlacement:
    """Place ``gpus`` GPUs (over ``nodes`` nodes) on healthy nodes of ``cluster``.

    Parameters
    ----------
    cluster
        The nodes, their free GPUs, cliques and fabric info.
    gpus, nodes, domain
        The request, as :class:`nvtopo.PlacementRequest` takes it; ``domain`` defaults to
        ``"required"``: one IMEX domain is one clique.
    even
        Ask for the same GPU count on every node (pods of one Job share one spec). Without
        ``nodes``, an uneven answer is placed again over as many nodes, evenly; where
        ``gpus`` does not split evenly over them, :class:`InfeasibleError` says so.

    Raises
    ------
    InfeasibleError
        No placement fits; the message ends with a count of the excluded nodes by reason.
    SelectionError
        The request is malformed (``gpus`` not a multiple of ``nodes``, ...).

    Examples
    --------
    >>> import nvtopo
    >>> d = place_domain(nvtopo.cluster("gb200-nvl72x2"), gpus=8, nodes=2)
    >>> d.node_names, d.gpus_per_node
    (('rack0000-tray00', 'rack0000-tray01'), 4)
    """
    request = PlacementRequest(gpus, nodes, domain)
    gated, why = _gate(cluster, request.gpus_per_node)
    found = _place(gated, request, why)
    if even and len({len(n.gpus) for n in found.nodes}) > 1:
        count = len(found.nodes)
        if gpus % count:
            shares = ", ".join(str(len(n.gpus)) for n in found.nodes)
            raise InfeasibleError(
                f"the best placement of {gpus} GPUs puts {shares} GPUs on its {count} nodes "
                f"and {gpus} does not split evenly over {count}; ask for a multiple of the "
                "GPUs per node, or give the node count"
            )
        request = PlacementRequest(gpus, count, domain)
        gated, why = _gate(cluster, request.gpus_per_node)
        found = _place(gated, request, why)
    order = {n.name: i for i, n in enumerate(cluster.nodes)}
    excluded = tuple(
        ExcludedNode(name, tuple(r)) for name, r in sorted(why.items(), key=lambda kv: order[kv[0]])
    )
    return DomainPlacement(request, found, excluded)
