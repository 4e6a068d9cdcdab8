"""Contract 2 through Python: against the brute-force reference, and the cluster state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.exceptions import InfeasibleError, SelectionError
from nvtopo.model import Gpu, GpuPair, NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.place import Allocation, PlacedNode
from tests.conftest import examples
from tests.reference import place_reference


def nvswitch(n: int, gen: int = 5) -> NodeTopology:
    gpus = tuple(Gpu(i, numa_affinity=(i * 2 // n,), nvlink_generation=gen) for i in range(n))
    pairs = tuple(GpuPair(a, b, nvlinks=18) for a in range(n) for b in range(a + 1, n))
    return NodeTopology(gpus=gpus, pairs=pairs)


def bridged(n: int = 4) -> NodeTopology:
    """PCIe box with NVLink bridges on pairs (0, 1), (2, 3), ..."""
    gpus = tuple(Gpu(i, numa_affinity=(i * 2 // n,)) for i in range(n))
    pairs = tuple(
        GpuPair(a, b, nvlinks=4 if b == a + 1 and a % 2 == 0 else 0, pcie="PXB")
        for a in range(n)
        for b in range(a + 1, n)
    )
    return NodeTopology(gpus=gpus, pairs=pairs)


_SHAPES = [nvswitch(4), bridged(4), nvswitch(2, gen=4), bridged(2)]


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    """Up to 8 nodes over up to four cliques (or none), so that several cliques can hold a
    job at once; most nodes share one shape and are whole or half free, so the tie rules
    (fuller first, then ids and names) decide; ComputeDomains on a few."""
    common = draw(st.sampled_from(_SHAPES))
    nodes = []
    for i in range(draw(st.integers(1, 8))):
        topo = common if draw(st.integers(0, 3)) else draw(st.sampled_from(_SHAPES))
        kind = draw(st.sampled_from(["all", "all", "half", "random"]))
        if kind == "all":
            free = list(topo.gpu_indices)
        elif kind == "half":
            free = list(topo.gpu_indices[: len(topo.gpus) // 2])
        else:
            free = draw(st.lists(st.sampled_from(topo.gpu_indices), unique=True))
        nodes.append(
            ClusterNode(
                f"node-{draw(st.sampled_from('abcdef'))}{i}",
                topo,
                clique=draw(
                    st.sampled_from([None, "uuid-1.0", "uuid-2.0", "uuid-3.0", "uuid-4.0"])
                ),
                free_gpus=tuple(sorted(free)),
                in_compute_domain=draw(st.integers(0, 4)) == 0,
            )
        )
    return Cluster(tuple(nodes))


@st.composite
def requests(draw: st.DrawFn) -> tuple[int, int | None, str]:
    nodes = draw(st.none() | st.integers(1, 4))
    gpus = draw(st.integers(1, 14)) if nodes is None else nodes * draw(st.integers(1, 4))
    return gpus, nodes, draw(st.sampled_from(["required", "preferred", "none"]))


def _as_dict(p: nvtopo.Placement) -> dict[str, object]:
    return {
        "nodes": tuple((n.name, n.gpus) for n in p.nodes),
        "cliques": p.cliques,
        "compute_domain": p.compute_domain,
    }


@settings(max_examples=examples(300))
@given(cluster=clusters(), request=requests())
def test_place_equals_reference(cluster: Cluster, request: tuple[int, int | None, str]) -> None:
    gpus, nodes, domain = request
    want = place_reference(cluster, gpus, nodes, domain)
    if want is None:
        with pytest.raises(InfeasibleError):
            nvtopo.place(cluster, gpus=gpus, nodes=nodes, domain=domain)  # type: ignore[arg-type]
    else:
        got = nvtopo.place(cluster, nvtopo.PlacementRequest(gpus, nodes, domain))  # type: ignore[arg-type]
        assert _as_dict(got) == want


@settings(max_examples=examples(80))
@given(cluster=clusters(), ops=st.lists(st.tuples(requests(), st.integers(0, 3)), max_size=25))
def test_state_never_double_allocates(
    cluster: Cluster, ops: list[tuple[tuple[int, int | None, str], int]]
) -> None:
    state = nvtopo.ClusterState(cluster)
    start = state.free_count
    assert start == sum(len(n.free) for n in cluster.nodes)
    held: list[Allocation] = []
    taken: set[tuple[str, int]] = set()
    # Each node offers one IMEX channel: it is in at most one ComputeDomain at a time.
    in_domain = {n.name for n in cluster.nodes if n.in_compute_domain}
    for (gpus, nodes, domain), release in ops:
        if release == 0 and held:
            gone = held.pop(0)
            state.release(gone)
            for n in gone.placement.nodes:
                taken -= {(n.name, g) for g in n.gpus}
                if gone.placement.compute_domain:
                    in_domain.discard(n.name)
        else:
            try:
                a = state.allocate(gpus=gpus, nodes=nodes, domain=domain)  # type: ignore[arg-type]
            except InfeasibleError:
                continue
            assert a.placement.gpu_count == gpus
            for n in a.placement.nodes:
                mine = {(n.name, g) for g in n.gpus}
                assert not mine & taken
                taken |= mine
                if a.placement.compute_domain:
                    assert n.name not in in_domain, f"{n.name} is in a second ComputeDomain"
                    in_domain.add(n.name)
            held.append(a)
        assert state.free_count + len(taken) == start
        for node in cluster.nodes:
            free = {(node.name, g) for g in state.free_gpus(node.name)}
            assert not free & taken
            assert state.in_compute_domain(node.name) == (node.name in in_domain)
    for a in held:
        state.release(a)
    assert state.free_count == start
    assert state.allocations() == ()


def racks(count: int, trays: int = 18) -> Cluster:
    tray = nvswitch(4)
    return Cluster(
        tuple(
            ClusterNode(f"rack{r}-tray{t:02d}", tray, clique=f"uuid-{r}.0")
            for r in range(count)
            for t in range(trays)
        )
    )


def test_gang_lands_in_one_rack_and_blocks_a_second_domain() -> None:
    state = nvtopo.ClusterState(racks(2))
    assert state.topology_count == 1 and len(state) == 36
    a = state.allocate(gpus=64, nodes=16, domain="required")
    assert a.placement.cliques == ("uuid-0.0",)
    assert a.placement.compute_domain
    assert all(n.gpus == (0, 1, 2, 3) for n in a.placement.nodes)
    assert state.in_compute_domain("rack0-tray00")
    # Rack 0 has 2 trays left: a 4-tray gang must go to rack 1.
    b = state.place(gpus=16, nodes=4, domain="required")
    assert b.cliques == ("uuid-1.0",)
    # A single-node job fills the fuller rack 0 first (best fit).
    c = state.place(gpus=4)
    assert c.nodes == (PlacedNode("rack0-tray16", (0, 1, 2, 3)),)
    assert not c.compute_domain
    with pytest.raises(InfeasibleError, match=r"no clique has 20 nodes .* the largest has 18"):
        state.place(gpus=80, nodes=20, domain="required")
    spread = state.place(gpus=80, nodes=20, domain="preferred")
    assert spread.cliques == ("uuid-0.0", "uuid-1.0")
    state.release(a.id)
    assert state.free_gpus("rack0-tray00") == (0, 1, 2, 3)
    assert not state.in_compute_domain("rack0-tray00")


def test_placement_json_and_explain() -> None:
    p = nvtopo.place(racks(1, trays=3), gpus=6, domain="required")
    doc = p.to_json()
    assert doc["nodes"] == [
        {"name": "rack0-tray00", "gpus": [0, 1, 2, 3]},
        {"name": "rack0-tray01", "gpus": [0, 1]},
    ]
    assert doc["cliques"] == ["uuid-0.0"] and doc["computeDomain"] is True
    assert doc["gpuCount"] == 6
    text = p.explain()
    assert "6 GPUs on 2 nodes in clique uuid-0.0" in text and "\n" not in text


def test_contract1_picks_gpus_on_each_node() -> None:
    box = bridged(4)
    c = Cluster((ClusterNode("pcie", box, free_gpus=(0, 2, 3)),))
    assert nvtopo.place(c, gpus=2).nodes[0].gpus == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"gpus": 0}, "gpus must be a positive int"),
        ({"gpus": 6, "nodes": 4}, "do not split evenly"),
        ({"gpus": 4, "nodes": 0}, "nodes must be a positive int"),
        ({"gpus": 4, "domain": "sometimes"}, "domain must be"),
        ({"gpus": True}, "gpus must be a positive int"),
    ],
)
def test_bad_requests(kwargs: dict, pattern: str) -> None:
    with pytest.raises(SelectionError, match=pattern):
        nvtopo.PlacementRequest(**kwargs)
    with pytest.raises(SelectionError, match=pattern):
        nvtopo.place(racks(1, 2), **kwargs)


def test_request_or_keywords_not_both_and_unknown_names() -> None:
    state = nvtopo.ClusterState(racks(1, 2))
    with pytest.raises(SelectionError, match="not both"):
        state.place(nvtopo.PlacementRequest(4), gpus=4)
    with pytest.raises(SelectionError, match="needs gpus"):
        state.place()
    with pytest.raises(SelectionError, match='no node "nope" in the cluster'):
        state.free_gpus("nope")
    with pytest.raises(SelectionError, match="no allocation 99"):
        state.release(99)
    with pytest.raises(InfeasibleError, match="only 8 free GPUs in the cluster, 9 requested"):
        state.place(gpus=9, domain="none")
    with pytest.raises(InfeasibleError, match="no node has 2 free GPUs; the most on one node"):
        nvtopo.place(Cluster((ClusterNode("a", nvswitch(2), free_gpus=(0,)),)), gpus=2, nodes=1)


def test_unhealthy_node_is_its_own_domain() -> None:
    from nvtopo.model import Fabric

    bad = Fabric(cluster_uuid="u", clique_id=1, state="in_progress")
    sick = NodeTopology(gpus=tuple(Gpu(i, fabric=bad) for i in range(4)))
    c = Cluster(
        (
            ClusterNode("a", sick, clique="u.1"),
            ClusterNode("b", nvswitch(4), clique="u.1"),
        )
    )
    with pytest.raises(InfeasibleError):
        nvtopo.place(c, gpus=8, nodes=2, domain="required")
    assert nvtopo.place(c, gpus=8, nodes=2, domain="preferred").cliques == ("u.1",)


def test_one_shot_place_reuses_state_per_cluster_object_only() -> None:
    """`place` caches the loaded cluster per object; a new Cluster is loaded afresh."""
    import dataclasses

    import nvtopo

    racks = nvtopo.cluster("gb200-nvl72x2")
    first = nvtopo.place(racks, gpus=8, nodes=2, domain="required")
    assert nvtopo.place(racks, gpus=8, nodes=2, domain="required") == first
    busy = {n.name for n in first.nodes}
    changed = nvtopo.Cluster(
        tuple(dataclasses.replace(n, free_gpus=()) if n.name in busy else n for n in racks.nodes)
    )
    again = nvtopo.place(changed, gpus=8, nodes=2, domain="required")
    assert not busy & {n.name for n in again.nodes}


def test_numbers_past_the_core_ints_are_plain_errors() -> None:
    state = nvtopo.ClusterState(racks(1, 2))
    for call in (state.place, state.allocate, lambda **kw: nvtopo.place(racks(1, 2), **kw)):
        with pytest.raises(InfeasibleError, match=f"only 8 free GPUs in the cluster, {2**40}"):
            call(gpus=2**40)
        with pytest.raises(InfeasibleError, match="only 8 free GPUs"):
            call(gpus=2**40, nodes=2**32)
    for ident in (2**64, 2**70, True):
        with pytest.raises(SelectionError, match="no allocation"):
            state.release(ident)
    assert state.free_count == 8 and state.allocations() == ()


def test_a_declared_all_zero_cluster_uuid_is_no_clique() -> None:
    """DESIGN: a clique counts only when the cluster UUID is not all zeros."""
    zero = "00000000-0000-0000-0000-000000000000.1"
    c = Cluster(tuple(ClusterNode(n, nvswitch(4), clique=zero) for n in "ab"))
    assert c.cliques == {}
    assert [n.domain for n in c.nodes] == [None, None]
    with pytest.raises(InfeasibleError, match="no clique"):
        nvtopo.place(c, gpus=8, nodes=2, domain="required")
