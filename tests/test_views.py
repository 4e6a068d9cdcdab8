"""networkx and numpy views of a topology."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nvtopo.formats.views import PATH_CLASS_RANK, bandwidth_matrix, path_class_matrix, to_networkx
from nvtopo.model import Gpu, GpuPair, Nic, NodeTopology, NvSwitch


def _topo() -> NodeTopology:
    return NodeTopology(
        gpus=(
            Gpu(0, nvlink_generation=5, numa_affinity=(0,)),
            Gpu(1, nvlink_generation=5, numa_affinity=(0,)),
            Gpu(2, numa_affinity=(1,)),
        ),
        pairs=(
            GpuPair(0, 1, nvlinks=18, via_nvswitch=True),
            GpuPair(0, 2, pcie="SYS"),
            GpuPair(1, 2, pcie="NODE"),
        ),
        nvswitches=(NvSwitch("sw0", gpu_links=((0, 18), (1, 18))),),
        nics=(Nic("NIC0", device="mlx5_0", gpu_paths=("PIX", "PXB", "SYS")),),
    )


def test_networkx_graph_has_gpus_switches_and_nics() -> None:
    g = to_networkx(_topo())
    kinds = {n: d["kind"] for n, d in g.nodes(data=True)}
    assert kinds == {
        "gpu0": "gpu",
        "gpu1": "gpu",
        "gpu2": "gpu",
        "nvswitch0": "nvswitch",
        "NIC0": "nic",
    }
    assert g.edges["gpu0", "gpu1"]["path"] == "NV18"
    assert g.edges["gpu0", "gpu1"]["bandwidth"] == 18 * 50
    assert g.edges["gpu1", "gpu2"]["path"] == "NODE"
    assert g.edges["gpu0", "nvswitch0"]["links"] == 18
    assert g.edges["gpu2", "NIC0"]["path"] == "SYS"


def test_numpy_matrices() -> None:
    bw = bandwidth_matrix(_topo())
    assert bw.dtype == np.int64
    assert bw.tolist() == [[0, 900, 0], [900, 0, 0], [0, 0, 0]]
    ranks = path_class_matrix(_topo())
    assert ranks[0, 1] == PATH_CLASS_RANK["NV"]
    assert ranks[1, 2] == PATH_CLASS_RANK["NODE"]
    assert (ranks == ranks.T).all()


def test_unknown_paths_stay_unknown_in_the_views() -> None:
    """An `nvidia-smi -q -x` report has no path matrix: its pairs are `?`, ranked below SYS."""
    t = NodeTopology(gpus=(Gpu(0), Gpu(1), Gpu(2)), pairs=(GpuPair(0, 2, pcie="SYS"),))
    ranks = path_class_matrix(t)
    assert ranks[0, 1] == PATH_CLASS_RANK["?"] > ranks[0, 2] == PATH_CLASS_RANK["SYS"]
    g = to_networkx(t)
    assert g.edges["gpu0", "gpu1"]["path"] == "?" and g.edges["gpu0", "gpu2"]["path"] == "SYS"


def test_islands_and_clique_rule() -> None:
    from nvtopo.model import Fabric

    t = _topo()
    assert t.nvlink_islands() == ((0, 1), (2,))
    ok = Fabric(
        cluster_uuid="5b4d2f0e-1111-2222-3333-444455556666",
        clique_id=3,
        state="completed",
        health="healthy",
    )
    node = t.replace_gpus(replace(g, fabric=ok) for g in t.gpus)
    assert node.clique == "5b4d2f0e-1111-2222-3333-444455556666.3"
    bad = Fabric(cluster_uuid=ok.cluster_uuid, clique_id=3, state="in_progress")
    mixed = node.replace_gpus((*node.gpus[:2], replace(node.gpus[2], fabric=bad)))
    assert mixed.clique is None
    zero = Fabric(state="completed", health="healthy")
    assert zero.clique is None
    sick = Fabric(cluster_uuid=ok.cluster_uuid, state="completed", health="unhealthy")
    assert sick.clique is None
