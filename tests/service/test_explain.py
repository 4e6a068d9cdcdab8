"""Explain's verdict per clique, on a cluster built to give each verdict once."""

from __future__ import annotations

import dataclasses

import nvtopo
from nvtopo.place import PlacementRequest
from nvtopo.service import PlacementState


def _not_ready(node: nvtopo.ClusterNode) -> nvtopo.ClusterNode:
    gpus = [
        dataclasses.replace(g, fabric=dataclasses.replace(g.fabric, state="in_progress"))
        for g in node.topology.gpus
    ]
    return dataclasses.replace(node, topology=node.topology.replace_gpus(gpus))


def test_every_verdict() -> None:
    nodes = []
    for n in nvtopo.cluster("gb200-nvl72x5").nodes:
        rack = int(n.name[4:8])
        tray = int(n.name[-2:])
        if rack == 0:
            n = _not_ready(n)  # the whole rack's fabric is coming up
        elif rack == 1 and tray < 6:
            n = dataclasses.replace(n, in_compute_domain=True)
        elif rack == 3 and tray < 10:
            n = dataclasses.replace(n, free_gpus=(0,))
        nodes.append(n)
    cluster = nvtopo.Cluster(tuple(nodes))
    state = PlacementState(cluster, spares=2)
    clique = {int(n.name[4:8]): _clique(n) for n in cluster.nodes}
    placement, why, verdicts = state.explain(PlacementRequest(64, nodes=16, domain="required"))
    assert placement is not None and why == ""
    got = {v.clique: (v.verdict, v.eligible_nodes) for v in verdicts}
    assert got == {
        clique[0]: ("unhealthy_fabric", 0),
        clique[1]: ("in_compute_domain", 10),
        clique[2]: ("taken", 16),
        clique[3]: ("too_few_free_nodes", 6),
        clique[4]: ("ranked_lower", 16),
    }
    reasons = {v.clique: v.reason for v in verdicts}
    assert "In Progress" in reasons[clique[0]]
    assert reasons[clique[1]].startswith("6 of its nodes are already in a ComputeDomain")
    # 17 nodes fit only with rack 2's and rack 4's two spares.
    _, why, verdicts = state.explain(PlacementRequest(68, nodes=17, domain="required"))
    assert "17 nodes" in why
    assert {v.clique: v.verdict for v in verdicts}[clique[2]] == "spares_held"
    # The core never places on a spare.
    assert placement.gpu_count == 64
    assert not {n.name for n in placement.nodes} & state.spare_nodes


def _clique(n: nvtopo.ClusterNode) -> str:
    f = n.topology.gpus[0].fabric
    assert f is not None
    return f"{f.cluster_uuid}.{f.clique_id}"
