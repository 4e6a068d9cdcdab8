"""The environment a prepared claim hands its containers (DESIGN, Contract 5's hints).

Computed from the node's topology and the claim's GPUs alone, so a prepare needs no API
call beyond reading the claim:

- ``CUDA_VISIBLE_DEVICES`` and ``NVTOPO_GPU_UUIDS``: the claim's GPU UUIDs in ring order
  (each next GPU the best connected to the previous one, by the core's pair score);
- ``NVTOPO_CLIQUE``: the clique the claim's GPUs share, when they share a healthy one;
- ``NCCL_MNNVL_ENABLE=1`` and ``NCCL_CUMEM_ENABLE=1``: only then (multi-node NVLink);
- ``NVLINK_DOMAIN_SIZE``: how many of this node's GPUs are in the NVLink domain of the
  claim's GPUs (the node's GPUs of the shared clique, else the NVLink island of the ring's
  first GPU);
- ``NCCL_IB_HCA``: the NIC nearest to each GPU, in ring order, each once.
"""

from __future__ import annotations

from collections.abc import Sequence

from nvtopo.model import PCIE_CLASSES, NodeTopology
from nvtopo.select import core_topology

__all__ = ["claim_environment", "nic_per_gpu", "ring_order"]


def ring_order(topology: NodeTopology, gpus: Sequence[int]) -> tuple[int, ...]:
    """The claim's GPUs as a ring: from the lowest index, each next the best connected.

    Ties go to the lowest index, so a fully connected (NVSwitch) set keeps index order.

    Examples
    --------
    >>> import nvtopo
    >>> ring_order(nvtopo.system("dgx1-v100"), [0, 1, 2, 3, 4])
    (0, 3, 2, 1, 4)
    """
    left = sorted(set(gpus))
    if len(left) <= 2:
        return tuple(left)
    core = core_topology(topology)
    position = {g.index: i for i, g in enumerate(topology.gpus)}
    ring = [left.pop(0)]
    while left:
        here = position[ring[-1]]
        best = max(left, key=lambda g: (core.score(here, position[g]), -g))
        left.remove(best)
        ring.append(best)
    return tuple(ring)


def nic_per_gpu(topology: NodeTopology) -> dict[int, str]:
    """The nearest NIC of each GPU by PCIe path class (first listed on ties), by its device."""
    rank = {c: i for i, c in enumerate(PCIE_CLASSES)}
    out: dict[int, str] = {}
    for pos, gpu in enumerate(topology.gpus):
        best: tuple[int, str] | None = None
        for nic in topology.nics:
            if pos >= len(nic.gpu_paths):
                continue
            key = rank.get(nic.gpu_paths[pos], len(rank))
            if best is None or key < best[0]:
                best = (key, nic.device or nic.name)
        if best is not None:
            out[gpu.index] = best[1]
    return out


def claim_environment(
    topology: NodeTopology, gpus: Sequence[int], *, namespace: str, name: str
) -> dict[str, str]:
    """The environment variables of a claim holding ``gpus`` (indices) of ``topology``."""
    ring = ring_order(topology, gpus)
    uuids = [topology.gpu(i).uuid or f"GPU-index-{i}" for i in ring]
    env = {
        "NVTOPO_CLAIM": f"{namespace}/{name}",
        "NVTOPO_GPU_UUIDS": ",".join(uuids),
        "CUDA_VISIBLE_DEVICES": ",".join(uuids),
    }
    fabrics = [topology.gpu(i).fabric for i in ring]
    cliques = {f.clique if f is not None else None for f in fabrics}
    clique = next(iter(cliques)) if len(cliques) == 1 else None
    if clique is not None:
        env["NVTOPO_CLIQUE"] = clique
        env["NCCL_MNNVL_ENABLE"] = "1"
        env["NCCL_CUMEM_ENABLE"] = "1"
        domain = [g for g in topology.gpus if g.fabric is not None and g.fabric.clique == clique]
        env["NVLINK_DOMAIN_SIZE"] = str(len(domain))
    elif ring:
        island = next(i for i in topology.nvlink_islands() if ring[0] in i)
        env["NVLINK_DOMAIN_SIZE"] = str(len(island))
    nics = nic_per_gpu(topology)
    hcas = list(dict.fromkeys(nics[i] for i in ring if i in nics))
    if hcas:
        env["NCCL_IB_HCA"] = ",".join(hcas)
    return env
