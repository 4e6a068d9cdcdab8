"""Properties of the rank order and groups (Contract 5), on random placed jobs."""

from __future__ import annotations

import math
import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.launch import plan_launch, plan_to_json
from nvtopo.model import Cluster, ClusterNode, NodeTopology
from nvtopo.place import PlacedNode, Placement

from .strategies import topologies

KINDS = [nvtopo.system(name) for name in ("gb200-tray", "dgx-h100", "dgx1-v100", "pcie-8x-l40s")]
CLIQUES = [f"{uuid.UUID(int=k + 1)}.{k + 1}" for k in range(4)]


@st.composite
def jobs(draw: st.DrawFn) -> tuple[Cluster, Placement]:
    cliques = draw(st.lists(st.sampled_from(CLIQUES), max_size=3, unique=True))
    count = draw(st.integers(1, 7))
    nodes, placed = [], []
    for i in range(count):
        topo = draw(st.sampled_from(KINDS))
        clique = draw(st.sampled_from(cliques)) if cliques and draw(st.integers(0, 4)) else None
        name = f"node{draw(st.integers(0, 99)):02d}-{i}"
        nodes.append(ClusterNode(name, topo, clique))
        gpus = draw(st.lists(st.sampled_from(topo.gpu_indices), min_size=1, unique=True))
        placed.append(PlacedNode(name, tuple(sorted(gpus))))
    used = sorted({n.domain for n in nodes if n.domain})
    draw(st.randoms()).shuffle(used)
    return Cluster(tuple(nodes)), Placement(tuple(placed), tuple(used), len(nodes) > 1)


def _contiguous(ranks: list[int]) -> bool:
    return ranks == list(range(ranks[0], ranks[0] + len(ranks)))


@settings(max_examples=150)
@given(jobs())
def test_every_rank_once_and_contiguous_by_clique_and_node(job: tuple[Cluster, Placement]) -> None:
    cluster, placement = job
    plan = plan_launch(cluster, placement)
    assert [r.rank for r in plan.ranks] == list(range(placement.gpu_count))
    assert sorted((r.node, r.gpu) for r in plan.ranks) == sorted(
        (n.name, g) for n in placement.nodes for g in n.gpus
    )
    for clique in {r.clique for r in plan.ranks} - {None}:
        assert _contiguous([r.rank for r in plan.ranks if r.clique == clique])
    for node in placement.nodes:
        assert _contiguous([r.rank for r in plan.ranks if r.node == node.name])
    # cliques come in placement order, nodes without one last
    order = [r.clique for r in plan.ranks]
    seen = list(dict.fromkeys(c for c in order if c is not None))
    assert seen == [c for c in placement.cliques if c in seen]
    if None in order:
        assert None not in order[order.index(None) :] or all(
            c is None for c in order[order.index(None) :]
        )


@settings(max_examples=150)
@given(jobs(), st.randoms(use_true_random=False))
def test_same_plan_whatever_the_node_order(
    job: tuple[Cluster, Placement], rnd: random.Random
) -> None:
    cluster, placement = job
    nodes = list(placement.nodes)
    rnd.shuffle(nodes)
    members = list(cluster.nodes)
    rnd.shuffle(members)
    shuffled = Placement(tuple(nodes), placement.cliques, placement.compute_domain)
    assert plan_to_json(plan_launch(Cluster(tuple(members)), shuffled)) == plan_to_json(
        plan_launch(cluster, placement)
    )


@settings(max_examples=150)
@given(jobs(), st.data())
def test_groups_stay_in_a_clique_whenever_the_sizes_allow(
    job: tuple[Cluster, Placement], data: st.DataObject
) -> None:
    cluster, placement = job
    plan = plan_launch(cluster, placement)
    # the rank counts of each NVLink domain (a clique, or a node outside any)
    domains: dict[str, int] = {}
    for r in plan.ranks:
        key = r.clique or f"node:{r.node}"
        domains[key] = domains.get(key, 0) + 1
    unit = math.gcd(*domains.values())
    divisors = [d for d in range(1, unit + 1) if unit % d == 0]
    inner = data.draw(st.sampled_from(divisors))
    tp = data.draw(st.sampled_from([d for d in divisors if inner % d == 0]))
    ep = inner // tp
    rest = plan.world_size // inner
    pp = data.draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
    sized = plan_launch(cluster, placement, tp=tp, ep=ep, pp=pp)
    assert sized.crossings == ()
    # and the check can fail: one tp group over every rank crosses as soon as two domains hold ranks
    whole = plan_launch(cluster, placement, tp=plan.world_size)
    assert bool(whole.crossings) == (len(domains) > 1)


@settings(max_examples=100)
@given(topologies(max_gpus=7), st.data())
def test_ring_has_the_best_weakest_link(topo: NodeTopology, data: st.DataObject) -> None:
    from itertools import permutations

    from nvtopo.launch.ring import ring_order, ring_score
    from nvtopo.select import core_topology

    gpus = data.draw(st.lists(st.sampled_from(topo.gpu_indices), min_size=1, unique=True))
    ring = ring_order(topo, gpus)
    assert sorted(ring) == sorted(gpus)
    score = core_topology(topo).score
    best = max(
        (ring_score(p, score) for p in permutations(sorted(gpus))),
        default=(0, 0),
    )
    assert ring_score(ring, score) == best
