"""Why each clique was taken or refused for a placement request (the ``Explain`` RPC).

For every declared clique (the nodes' ``clique``, before the health rule) the verdict is
the first of these that holds:

- ``unhealthy_fabric``: none of its nodes counts in it after the health rule (a GPU whose
  fabric state is not Completed, an all-zero cluster UUID, or Unhealthy health);
- ``taken``: the chosen placement uses it;
- ``ranked_lower``: its eligible nodes could take the request, but another clique ranks
  better (Contract 2's order);
- ``spares_held``: it could, only with the spare nodes the service holds back;
- ``in_compute_domain``: it could, only with nodes already in a ComputeDomain (a multi-node
  request under ``required`` or ``preferred`` forms one, and a node hosts one at a time);
- ``too_few_free_nodes``: even so, too few nodes have their share free.

A node's share is ``gpus / nodes``; without ``nodes`` the clique's free GPUs must add up to
``gpus``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from nvtopo.model import ZERO_CLUSTER_UUID, ClusterNode
from nvtopo.place import Placement, PlacementRequest

__all__ = ["CliqueVerdict", "Verdict", "explain_cliques"]

Verdict = Literal[
    "taken",
    "ranked_lower",
    "too_few_free_nodes",
    "unhealthy_fabric",
    "spares_held",
    "in_compute_domain",
]


@dataclass(frozen=True)
class CliqueVerdict:
    """One clique's verdict for a request."""

    clique: str
    verdict: Verdict
    reason: str
    nodes: int
    eligible_nodes: int
    free_gpus: int


def _declared(n: ClusterNode) -> str | None:
    """The clique the node says it is in, before the health rule (file, label, or GPUs)."""
    if n.clique is not None:
        return None if n.clique.startswith(ZERO_CLUSTER_UUID) else n.clique
    for g in n.topology.gpus:
        f = g.fabric
        if f is not None and f.cluster_uuid != ZERO_CLUSTER_UUID:
            return f"{f.cluster_uuid}.{f.clique_id}"
    return None


def explain_cliques(
    nodes: Sequence[ClusterNode],
    free: Mapping[str, int],
    spares: frozenset[str],
    request: PlacementRequest,
    placement: Placement | None,
) -> tuple[CliqueVerdict, ...]:
    """A verdict per declared clique, sorted by clique id.

    Parameters
    ----------
    nodes
        The cluster's nodes.
    free
        Node name → GPUs free now (held GPUs out; a spare node counts its free GPUs).
    spares
        Names of the spare nodes held back.
    request
        What was asked.
    placement
        The chosen placement, or None when nothing fits.
    """
    groups: dict[str, list[ClusterNode]] = {}
    for n in nodes:
        c = _declared(n)
        if c is not None:
            groups.setdefault(c, []).append(n)
    used = set(placement.cliques) if placement is not None else set()
    share = request.gpus_per_node or 1
    biggest = max((len(n.topology.gpus) for n in nodes), default=1)
    needs_cd = request.domain != "none" and (
        request.nodes > 1 if request.nodes is not None else request.gpus > biggest
    )

    def fits(members: list[ClusterNode]) -> bool:
        if request.nodes is not None:
            return sum(free[m.name] >= share for m in members) >= request.nodes
        return sum(free[m.name] for m in members) >= request.gpus

    want = (
        f"{request.nodes} nodes with {share} free GPUs each"
        if request.nodes is not None
        else f"{request.gpus} free GPUs"
    )
    out = []
    for clique, members in sorted(groups.items()):
        healthy = [m for m in members if m.domain == clique]
        usable = [m for m in healthy if not (needs_cd and m.in_compute_domain)]
        eligible = [m for m in usable if m.name not in spares]
        count = sum(free[m.name] >= share for m in eligible)
        gpus = sum(free[m.name] for m in eligible)
        verdict: Verdict
        if not healthy:
            verdict = "unhealthy_fabric"
            why = members[0].verdict.reason or "fabric not ready"
            reason = f"no node counts in it; {members[0].name}: {why}"
        elif clique in used:
            verdict, reason = "taken", "the placement uses this clique"
        elif fits(eligible):
            verdict, reason = "ranked_lower", "it fits, but another clique ranks better"
        elif fits(usable):
            held = sum(m.name in spares for m in usable)
            verdict = "spares_held"
            reason = f"it fits only with the {held} spare nodes held back; needs {want}"
        elif needs_cd and fits([m for m in healthy if m.name not in spares]):
            cd = sum(m.in_compute_domain for m in healthy)
            verdict = "in_compute_domain"
            reason = f"{cd} of its nodes are already in a ComputeDomain; needs {want}"
        else:
            verdict = "too_few_free_nodes"
            has = f"{count} have their share" if request.nodes is not None else f"{gpus} free"
            reason = f"needs {want}; {has}"
        out.append(CliqueVerdict(clique, verdict, reason, len(members), count, gpus))
    return tuple(out)
