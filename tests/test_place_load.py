"""Loading a cluster into a ClusterState: what is worked out once per shape of node is right
for every node, whichever parts the nodes share."""

from __future__ import annotations

import dataclasses

import nvtopo
from nvtopo.formats.jsonio import node_to_json
from nvtopo.model import Fabric, NodeTopology, NvLink
from nvtopo.model.cluster import Cluster, ClusterNode

OTHER_RACK = "11111111-2222-3333-4444-555555555555"


def _own_uuids(topo: NodeTopology, seed: int) -> NodeTopology:
    """``topo`` with GPU UUIDs of its own (other parts shared), as every real tray has."""
    return topo.replace_gpus(
        dataclasses.replace(g, uuid=f"GPU-{seed:08x}-0000-0000-0000-{g.index:012x}")
        for g in topo.gpus
    )


def _with_fabric(topo: NodeTopology, gpu: int, **changes: object) -> NodeTopology:
    gpus = []
    for g in topo.gpus:
        if g.index == gpu:
            assert g.fabric is not None
            g = dataclasses.replace(g, fabric=dataclasses.replace(g.fabric, **changes))  # type: ignore[arg-type]
        gpus.append(g)
    return topo.replace_gpus(gpus)


def _link_down(topo: NodeTopology, gpu: int, link: int) -> NodeTopology:
    gpus = []
    for g in topo.gpus:
        if g.index == gpu:
            links = tuple(
                dataclasses.replace(n, state="down") if n.link == link else n for n in g.nvlinks
            )
            g = dataclasses.replace(g, nvlinks=links)
        gpus.append(g)
    return topo.replace_gpus(gpus)


def _mixed_rack() -> Cluster:
    """Trays of one rack that share pairs, fabric and link records, and trays that differ
    from them in one part each: fabric state, fabric health, a link, the declared clique,
    a copy of every part (equal values, other objects)."""
    rack = nvtopo.cluster("gb200-nvl72")
    base = rack.nodes[0].topology
    clique = rack.nodes[0].clique
    assert clique is not None
    copied = NodeTopology.from_json(node_to_json(base))
    variants: list[tuple[NodeTopology, str | None, tuple[int, ...] | None]] = [
        (base, clique, None),
        (base, clique, (1, 2)),
        (_with_fabric(base, 2, state="in_progress"), clique, None),
        (_with_fabric(base, 0, health="degraded"), clique, None),
        (_with_fabric(base, 3, cluster_uuid=OTHER_RACK), clique, None),
        (_link_down(base, 1, 4), clique, (0, 1, 3)),
        (base, f"{OTHER_RACK}.1", None),
        (base, None, None),
        (copied, clique, None),
        (_with_fabric(copied, 2, state="in_progress"), clique, (2, 3)),
    ]
    nodes = []
    for i in range(3 * len(variants)):
        topo, declared, free = variants[i % len(variants)]
        nodes.append(ClusterNode(f"n{i:02d}", _own_uuids(topo, i), declared, free))
    return Cluster(tuple(nodes))


def test_every_node_gets_its_own_verdict_and_free_gpus() -> None:
    cluster = _mixed_rack()
    state = nvtopo.ClusterState(cluster)
    verdicts = state._verdicts
    seen = set()
    for node in cluster.nodes:
        # The model's answer for this node alone, from a fresh copy (no cached verdict).
        alone = dataclasses.replace(node)
        assert verdicts[node.name] == (alone.domain, alone.verdict.reason), node.name
        assert state.free_gpus(node.name) == alone.free, node.name
        seen.add((alone.domain, alone.verdict.reason, alone.free))
    # The variants are told apart: healthy, each reason, each free set.
    assert len(seen) >= 8
    assert state.topology_count == 1  # one core topology for every tray of the kind


def test_health_findings_leave_gpus_out_of_every_tray_that_has_them() -> None:
    rack = nvtopo.cluster("gb200-nvl72")
    base = rack.nodes[0].topology
    sick = _link_down(base, 1, 4)
    nodes = [
        ClusterNode(f"t{i}", _own_uuids(sick if i % 2 else base, i), rack.nodes[0].clique)
        for i in range(6)
    ]
    state = nvtopo.ClusterState(Cluster(tuple(nodes)))
    for i, node in enumerate(nodes):
        assert state.free_gpus(node.name) == ((0, 2, 3) if i % 2 else (0, 1, 2, 3))


def test_a_changed_node_gets_a_new_verdict() -> None:
    """A verdict worked out for one load is not carried to a node that changed since."""
    rack = nvtopo.cluster("gb200-nvl72")
    node = rack.nodes[0]
    before = nvtopo.ClusterState(Cluster((node,)))
    assert before._verdicts[node.name] == (node.clique, None)
    down = dataclasses.replace(node, topology=_with_fabric(node.topology, 0, state="not_started"))
    after = nvtopo.ClusterState(Cluster((down,)))
    assert after._verdicts[node.name] == (None, "GPU 0: fabric state Not Started")
    moved = dataclasses.replace(node, clique=f"{OTHER_RACK}.1")
    reason = nvtopo.ClusterState(Cluster((moved,)))._verdicts[node.name][1]
    assert reason is not None and reason.startswith("declared clique 11111111")
    # And the first node, loaded again, is as it was.
    assert nvtopo.ClusterState(Cluster((node,)))._verdicts[node.name] == (node.clique, None)


def test_core_topologies_differ_where_the_core_reads_a_difference() -> None:
    rack = nvtopo.cluster("gb200-nvl72")
    base = rack.nodes[0].topology
    older = base.replace_gpus(dataclasses.replace(g, nvlink_generation=4) for g in base.gpus)
    one_numa = base.replace_gpus(dataclasses.replace(g, numa_affinity=(0,)) for g in base.gpus)
    fewer = dataclasses.replace(
        base,
        pairs=tuple(dataclasses.replace(p, nvlinks=p.nvlinks // 2) for p in base.pairs),
    )
    tops = [base, older, one_numa, fewer, _own_uuids(base, 9)]
    nodes = tuple(ClusterNode(f"n{i}", t) for i, t in enumerate(tops))
    assert nvtopo.ClusterState(Cluster(nodes)).topology_count == 4


def test_links_of_equal_value_in_other_objects_read_the_same() -> None:
    gpu = nvtopo.system("gb200-tray").gpus[0]
    links = tuple(NvLink(n.link, n.state, n.version, n.remote_type) for n in gpu.nvlinks)
    assert links == gpu.nvlinks and links is not gpu.nvlinks
    fabric = dataclasses.replace(gpu.fabric) if gpu.fabric is not None else Fabric()
    topo = nvtopo.system("gb200-tray")
    rebuilt = topo.replace_gpus(
        dataclasses.replace(g, nvlinks=links, fabric=fabric) if g.index == 0 else g
        for g in topo.gpus
    )
    nodes = (ClusterNode("a", topo), ClusterNode("b", rebuilt))
    state = nvtopo.ClusterState(Cluster(nodes))
    assert state._verdicts["a"] == state._verdicts["b"]
    assert state.free_gpus("a") == state.free_gpus("b") == (0, 1, 2, 3)
    assert state.topology_count == 1
