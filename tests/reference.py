"""Brute-force references of Contracts 1 and 2, written from the contract text alone.

They enumerate every candidate and take the minimum of a sort key that spells the
contract's order; they share no code with the core or with :mod:`nvtopo.select` /
:mod:`nvtopo.place`, so agreement is evidence, not tautology. Exponential: small inputs only.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode

__all__ = ["pair_score", "place_reference", "select_reference"]

_PCIE_SCORE = {"PIX": 50, "PXB": 40, "PHB": 30, "NODE": 20, "SYS": 10}
_LINK_GBPS = {1: 20, 2: 25, 3: 25, 4: 25, 5: 50}


def pair_score(topology: NodeTopology, a: int, b: int) -> int:
    """``1000 + nvlinks × GB/s per link`` with NVLinks, else the PCIe class score."""
    a, b = min(a, b), max(a, b)
    pair = topology.pair(a, b)
    if pair.nvlinks > 0:
        gen = topology.gpu(a).nvlink_generation or topology.gpu(b).nvlink_generation
        return 1000 + pair.nvlinks * _LINK_GBPS.get(gen or 0, 25)
    return _PCIE_SCORE.get(pair.pcie or "SYS", 10)


def select_reference(
    topology: NodeTopology,
    k: int,
    available: tuple[int, ...] | None = None,
    required: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Contract 1 by enumeration of every k-subset of the available GPUs."""
    avail = sorted(topology.gpu_indices if available is None else available)
    score = {(a, b): pair_score(topology, a, b) for a in avail for b in avail if a != b}
    numa = {g.index: g.numa_key for g in topology.gpus}
    best: tuple[Any, ...] | None = None
    for s in combinations(avail, k):
        if not set(required) <= set(s):
            continue
        pairs = list(combinations(s, 2))
        scores = [score[p] for p in pairs]
        bottleneck = min(scores) if scores else 0
        total = sum(scores)
        keys = len({numa[g] for g in s})
        cut = sum(score[(i, j)] for i in s for j in avail if j not in s)
        key = (-bottleneck, -total, keys, cut, s)
        if best is None or key < best:
            best = key
    assert best is not None
    gpus = best[4]
    pairs = list(combinations(gpus, 2))
    weakest = min(pairs, key=lambda p: (score[p], p)) if pairs else None
    return {
        "gpus": gpus,
        "bottleneck": -best[0],
        "total": -best[1],
        "numa_keys": best[2],
        "cut": best[3],
        "bottleneck_pair": weakest,
        "bottleneck_path": topology.path_class(*weakest) if weakest else None,
    }


def _shares(nodes: tuple[ClusterNode, ...], gpus: int, per_node: int | None) -> list[int] | None:
    """GPUs each node gives, or None when the nodes cannot hold the job this way."""
    if per_node is not None:
        if any(len(n.free) < per_node for n in nodes):
            return None
        return [per_node] * len(nodes)
    if sum(len(n.free) for n in nodes) < gpus:
        return None
    # Most free first, ties by name; each gives all it has until the job is met.
    order = sorted(range(len(nodes)), key=lambda i: (-len(nodes[i].free), nodes[i].name))
    shares = [0] * len(nodes)
    left = gpus
    for i in order:
        shares[i] = min(len(nodes[i].free), left)
        left -= shares[i]
    return None if 0 in shares else shares


def place_reference(
    cluster: Cluster, gpus: int, nodes: int | None = None, domain: str = "preferred"
) -> dict[str, Any] | None:
    """Contract 2 by enumeration of every node subset; None when nothing is feasible."""
    everyone = sorted(cluster.nodes, key=lambda n: n.name)

    def dom(n: ClusterNode) -> str:  # a node without a clique is its own domain
        return n.domain if n.domain is not None else n.name

    domain_free: dict[str, int] = {}
    for n in everyone:
        domain_free[dom(n)] = domain_free.get(dom(n), 0) + len(n.free)
    per_node = None if nodes is None else gpus // nodes
    best: tuple[Any, ...] | None = None
    for size in range(1, len(everyone) + 1):
        if nodes is not None and size != nodes:
            continue
        for chosen in combinations(everyone, size):
            shares = _shares(chosen, gpus, per_node)
            if shares is None:
                continue
            multi = size > 1
            doms = sorted({dom(n) for n in chosen})
            if domain != "none" and multi:
                if any(n.in_compute_domain for n in chosen):
                    continue
                if domain == "required" and (
                    len(doms) != 1 or any(n.domain is None for n in chosen)
                ):
                    continue
            names = tuple(n.name for n in chosen)
            on_nodes = sum(len(n.free) for n in chosen)
            if domain == "none":
                key: tuple[Any, ...] = (size, on_nodes, names)
            else:
                in_doms = sum(domain_free[d] for d in doms)
                key = (len(doms), size, in_doms, on_nodes, tuple(doms), names)
            if best is None or key < best[0]:
                best = (key, chosen, shares)
    if best is None:
        return None
    _, chosen, shares = best
    placed = []
    for n, share in zip(chosen, shares, strict=True):
        pick = select_reference(n.topology, share, available=n.free)
        placed.append((n.name, pick["gpus"]))
    return {
        "nodes": tuple(placed),
        "cliques": tuple(sorted({n.domain for n in chosen if n.domain is not None})),
        "compute_domain": domain != "none" and len(chosen) > 1,
    }
