"""Views of a :class:`~nvtopo.model.NodeTopology` as a networkx graph and numpy matrices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nvtopo.model import PCIE_CLASSES, NodeTopology

if TYPE_CHECKING:
    import networkx as nx
    import numpy as np

__all__ = ["PATH_CLASS_RANK", "bandwidth_matrix", "path_class_matrix", "to_networkx"]

#: Rank of each path class in :func:`path_class_matrix`: 0 self, 1 NVLink, then PCIe best
#: first, then ``?`` for a path the source did not give (worse than any known one).
PATH_CLASS_RANK: dict[str, int] = {
    "X": 0,
    "NV": 1,
    **{c: i + 2 for i, c in enumerate(PCIE_CLASSES)},
    "?": len(PCIE_CLASSES) + 2,
}


def to_networkx(topology: NodeTopology) -> nx.Graph:
    """A graph with one node per GPU (``gpu<i>``), NVSwitch (``nvswitch<k>``) and NIC.

    GPU–GPU edges carry ``path`` (``NV18``, ``SYS``, ...), ``nvlinks``, ``bandwidth`` (GB/s
    per direction over NVLink) and ``pcie``; GPU–NVSwitch edges carry ``links``; GPU–NIC
    edges carry ``path``. Node attributes say ``kind`` and, for GPUs, ``index`` and
    ``numa_key``.

    Examples
    --------
    >>> import nvtopo
    >>> g = to_networkx(nvtopo.system("dgx-h100"))
    >>> g.edges["gpu0", "gpu1"]["path"]
    'NV18'
    """
    import networkx as nx

    g = nx.Graph(name=topology.name or topology.system or "node")
    for gpu in topology.gpus:
        g.add_node(
            f"gpu{gpu.index}", kind="gpu", index=gpu.index, name=gpu.name, numa_key=gpu.numa_key
        )
    for p in topology.iter_pairs():
        g.add_edge(
            f"gpu{p.a}",
            f"gpu{p.b}",
            path=p.path_class,
            nvlinks=p.nvlinks,
            pcie=p.pcie,
            bandwidth=topology.pair_bandwidth(p.a, p.b),
        )
    for k, sw in enumerate(topology.nvswitches):
        g.add_node(f"nvswitch{k}", kind="nvswitch", id=sw.id)
        for gpu_index, links in sw.gpu_links:
            g.add_edge(f"gpu{gpu_index}", f"nvswitch{k}", links=links)
    for nic in topology.nics:
        g.add_node(nic.name, kind="nic", device=nic.device)
        for gpu, path in zip(topology.gpus, nic.gpu_paths, strict=False):
            g.add_edge(f"gpu{gpu.index}", nic.name, path=path)
    return g


def bandwidth_matrix(topology: NodeTopology) -> np.ndarray:
    """GPU×GPU NVLink GB/s per direction, in GPU order (diagonal 0)."""
    import numpy as np

    idx = topology.gpu_indices
    pos = {g: i for i, g in enumerate(idx)}
    m = np.zeros((len(idx), len(idx)), dtype=np.int64)
    for p in topology.iter_pairs():
        bw = topology.pair_bandwidth(p.a, p.b)
        m[pos[p.a], pos[p.b]] = m[pos[p.b], pos[p.a]] = bw
    return m


def path_class_matrix(topology: NodeTopology) -> np.ndarray:
    """GPU×GPU path-class ranks (see :data:`PATH_CLASS_RANK`; lower is better)."""
    import numpy as np

    idx = topology.gpu_indices
    pos = {g: i for i, g in enumerate(idx)}
    m = np.zeros((len(idx), len(idx)), dtype=np.int64)
    for p in topology.iter_pairs():
        rank = PATH_CLASS_RANK["NV"] if p.nvlinks else PATH_CLASS_RANK[p.pcie or "?"]
        m[pos[p.a], pos[p.b]] = m[pos[p.b], pos[p.a]] = rank
    return m
