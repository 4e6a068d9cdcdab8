"""Contract 1 through Python: against the brute-force reference, known machines, errors."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.exceptions import (
    InfeasibleError,
    RequiredUnavailableError,
    SelectionError,
    UnknownGpuError,
)
from nvtopo.model import PCIE_CLASSES, Gpu, GpuPair, NodeTopology
from nvtopo.select import Selection, core_topology
from tests.reference import pair_score, select_reference

_KEYS = [(0,), (1,), (0, 1), ()]


@st.composite
def topologies(draw: st.DrawFn, max_gpus: int = 12) -> NodeTopology:
    """Random nodes: NVLink pairs of a few widths, every PCIe class, mixed NUMA keys."""
    n = draw(st.integers(1, max_gpus))
    gpus = tuple(
        Gpu(
            i,
            numa_affinity=draw(st.sampled_from(_KEYS)),
            cpu_affinity=draw(st.none() | st.sampled_from(["0-15", "16-31"])),
            nvlink_generation=draw(st.none() | st.integers(1, 5)),
        )
        for i in range(n)
    )
    pairs = []
    for a in range(n):
        for b in range(a + 1, n):
            nvlinks = draw(st.sampled_from([0, 0, 0, 1, 2, 4, 12, 18]))
            pcie = draw(st.none() | st.sampled_from(PCIE_CLASSES))
            if nvlinks or pcie:
                pairs.append(GpuPair(a, b, nvlinks=nvlinks, pcie=pcie))
    return NodeTopology(gpus=gpus, pairs=tuple(pairs))


def _as_dict(s: Selection) -> dict[str, object]:
    return {
        "gpus": s.gpus,
        "bottleneck": s.bottleneck,
        "total": s.total,
        "numa_keys": s.numa_keys,
        "cut": s.cut,
        "bottleneck_pair": s.bottleneck_pair,
        "bottleneck_path": s.bottleneck_path,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topo=topologies(), data=st.data())
def test_select_equals_reference(topo: NodeTopology, data: st.DataObject) -> None:
    ids = list(topo.gpu_indices)
    available = data.draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
    required = data.draw(st.lists(st.sampled_from(available), max_size=2, unique=True))
    k = data.draw(st.integers(max(1, len(required)), len(available)))
    got = nvtopo.select_gpus(topo, k, available=available, required=required)
    want = select_reference(topo, k, available=tuple(available), required=tuple(required))
    assert _as_dict(got) == want
    assert got.optimal
    assert set(got.remaining) == set(available) - set(got.gpus)


def _mesh(n: int, links: dict[tuple[int, int], int], gen: int, numa: list[int]) -> NodeTopology:
    gpus = tuple(Gpu(i, numa_affinity=(numa[i],), nvlink_generation=gen) for i in range(n))
    pairs = tuple(
        GpuPair(a, b, nvlinks=links.get((a, b), 0), pcie="NODE" if numa[a] == numa[b] else "SYS")
        for a in range(n)
        for b in range(a + 1, n)
    )
    return NodeTopology(gpus=gpus, pairs=pairs)


def dgx1() -> NodeTopology:
    """DGX-1 V100 hybrid cube mesh (NV1 / NV2), GPUs 0-3 and 4-7 on two sockets."""
    nv2 = [(0, 3), (0, 4), (1, 2), (1, 5), (2, 3), (4, 7), (5, 6), (6, 7)]
    nv1 = [(0, 1), (0, 2), (1, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7)]
    links = {p: 2 for p in nv2} | {p: 1 for p in nv1}
    return _mesh(8, links, 2, [0, 0, 0, 0, 1, 1, 1, 1])


def b200_with_lost_gpu(lost: int = 2) -> NodeTopology:
    """HGX B200 (NV18 through NVSwitch) where one GPU has lost its NVLinks."""
    links = {(a, b): 18 for a in range(8) for b in range(a + 1, 8) if lost not in (a, b)}
    return _mesh(8, links, 5, [0, 0, 0, 0, 1, 1, 1, 1])


def test_dgx1_quads_and_pairs() -> None:
    t = dgx1()
    four = nvtopo.select_gpus(t, 4)
    assert four.gpus == (0, 1, 2, 3)
    assert four.bottleneck == 1025 and four.bottleneck_path == "NV1"
    two = nvtopo.select_gpus(t, 2, available=(0, 1, 2, 5, 6, 7))
    assert two.bottleneck_path == "NV2"
    assert _as_dict(two) == select_reference(t, 2, available=(0, 1, 2, 5, 6, 7))


def test_lost_nvlinks_are_avoided() -> None:
    t = b200_with_lost_gpu(2)
    rng = random.Random(7)
    for _ in range(100):
        avail = sorted(rng.sample(range(8), rng.randint(5, 8)))
        if 2 not in avail:
            avail = sorted([*avail[1:], 2])
        s = nvtopo.select_gpus(t, 4, available=avail)
        assert 2 not in s.gpus
        assert s.bottleneck == 1000 + 18 * 50


def test_selection_fields_and_explain() -> None:
    t = dgx1()
    s = nvtopo.select_gpus(t, 3, available=(0, 1, 2, 3, 4), required=(4,))
    assert s.gpus == tuple(sorted(s.gpus)) and 4 in s.gpus
    assert s.bottleneck == min(pair_score(t, a, b) for a in s.gpus for b in s.gpus if a < b)
    text = s.explain()
    assert "\n" not in text
    assert f"over {s.bottleneck_path}" in text and "NUMA domain" in text
    doc = s.to_json()
    assert doc["gpus"] == list(s.gpus) and doc["bottleneckPath"] == s.bottleneck_path
    assert doc["optimal"] is True and doc["remaining"] == list(s.remaining)
    one = nvtopo.select_gpus(t, 1)
    assert one.bottleneck_pair is None and one.bottleneck == 0 and one.total == 0
    assert "single GPU" in one.explain()
    with pytest.raises(AttributeError):
        s.gpus = (1,)  # type: ignore[misc]


def test_sparse_gpu_ids() -> None:
    gpus = (Gpu(0), Gpu(2), Gpu(5))
    t = NodeTopology(gpus=gpus, pairs=(GpuPair(2, 5, nvlinks=4),))
    assert nvtopo.select_gpus(t, 2).gpus == (2, 5)
    with pytest.raises(UnknownGpuError, match="GPU 1 in available is not on this node"):
        nvtopo.select_gpus(t, 1, available=[1])


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"k": 0}, SelectionError, "k must be between 1 and 8"),
        ({"k": 9}, SelectionError, "k must be between 1 and 8"),
        ({"k": -1}, SelectionError, "k must be a positive int"),
        ({"k": "2"}, SelectionError, "k must be a positive int"),
        ({"k": 2, "available": [0, 9]}, UnknownGpuError, "GPU 9 in available"),
        ({"k": 2, "available": [0, 0, 1]}, UnknownGpuError, "listed twice"),
        ({"k": 2, "required": [-3]}, UnknownGpuError, "GPU -3 in required"),
        ({"k": 2, "available": ["a"]}, SelectionError, "must be ints"),
        ({"k": 2, "available": "01"}, SelectionError, "must be GPU ids"),
        ({"k": 1, "required": [0, 1]}, SelectionError, "2 GPUs required but k is 1"),
        ({"k": 2, "available": [0, 1], "required": [3]}, RequiredUnavailableError, "GPU 3"),
        ({"k": 4, "available": [0, 2, 5]}, InfeasibleError, r"only 3 GPUs available \(0, 2, 5\)"),
        ({"k": 2, "budget": -1}, SelectionError, "budget"),
        # Past the core's fixed-width ints: still the plain error, not an overflow.
        ({"k": 2**70}, SelectionError, "k must be between 1 and 8"),
        ({"k": True}, SelectionError, "k must be a positive int, got True"),
        ({"k": 2, "available": [0, 2**70]}, UnknownGpuError, f"GPU {2**70} in available"),
        ({"k": 2, "required": [2**64]}, UnknownGpuError, f"GPU {2**64} in required"),
    ],
)
def test_errors_are_one_line(kwargs: dict, error: type, pattern: str) -> None:
    kwargs = dict(kwargs)
    k = kwargs.pop("k")
    with pytest.raises(error, match=pattern) as info:
        nvtopo.select_gpus(dgx1(), k, **kwargs)
    assert "\n" not in str(info.value)


def test_required_unavailable_is_infeasible() -> None:
    assert issubclass(RequiredUnavailableError, InfeasibleError)


def test_budget_on_a_72_gpu_node() -> None:
    # One NVL72 as a single synthetic node: all pairs NV18, two GPUs per NUMA key.
    gpus = tuple(Gpu(i, numa_affinity=(i // 2,), nvlink_generation=5) for i in range(72))
    pairs = tuple(GpuPair(a, b, nvlinks=18) for a in range(72) for b in range(a + 1, 72))
    t = NodeTopology(gpus=gpus, pairs=pairs)
    # Every GPU of a NUMA key is interchangeable: two search nodes prove the answer.
    assert nvtopo.select_gpus(t, 9, budget=2).optimal
    # Links of uneven counts leave much to prove: two nodes do not.
    uneven = tuple(
        GpuPair(a, b, nvlinks=1 + (7 * a + 13 * b) % 18)
        for a in range(72)
        for b in range(a + 1, 72)
    )
    cut_short = nvtopo.select_gpus(NodeTopology(gpus=gpus, pairs=uneven), 20, budget=2)
    assert len(cut_short.gpus) == 20 and not cut_short.optimal
    full = nvtopo.select_gpus(t, 9)
    assert full.optimal and full.gpus == tuple(range(9)) and full.numa_keys == 5
    rng = random.Random(3)
    avail = sorted(rng.sample(range(72), 40))
    s = nvtopo.select_gpus(t, 8, available=avail)
    assert s.optimal and s.numa_keys == 4


def test_core_topology_is_built_once() -> None:
    t = dgx1()
    assert core_topology(t) is core_topology(t)
    assert len(core_topology(t)) == 8
    assert core_topology(t).score(0, 3) == 1050


def test_nvlink_counts_the_core_cannot_score_are_refused_by_the_model() -> None:
    """A corrupted count would overflow the core's 32-bit pair scores."""
    from nvtopo.exceptions import TopologyError
    from nvtopo.model import MAX_NVLINKS, Gpu, GpuPair, NodeTopology, parse_path_class

    gpus = (Gpu(0), Gpu(1))
    ok = NodeTopology(gpus=gpus, pairs=(GpuPair(0, 1, nvlinks=MAX_NVLINKS),))
    assert nvtopo.select_gpus(ok, 2).bottleneck == 1000 + MAX_NVLINKS * 25
    for field in ("nvlinks", "nvlinks_down"):
        for count in (-1, MAX_NVLINKS + 1, 10**12):
            with pytest.raises(TopologyError, match=f"{field} must be 0 to {MAX_NVLINKS}"):
                NodeTopology(gpus=gpus, pairs=(GpuPair(0, 1, **{field: count}),))
    for cell in ("NV0", "NV65", "NV99999999999999999999"):
        with pytest.raises(TopologyError, match="an NVLink bond has 1 to 64 links"):
            parse_path_class(cell)


def _mixed_node(n: int, seed: int) -> NodeTopology:
    """A synthetic node past 16 GPUs: NVLink bonds of random width on some pairs, a
    random PCIe class on the rest, four NUMA keys."""
    rng = random.Random(seed)
    gpus = tuple(Gpu(i, numa_affinity=(i % 4,), nvlink_generation=4) for i in range(n))
    pairs = tuple(
        GpuPair(a, b, nvlinks=rng.choice([0, 0, 0, 1, 2, 4, 8]), pcie=rng.choice(PCIE_CLASSES))
        for a in range(n)
        for b in range(a + 1, n)
    )
    return NodeTopology(gpus=gpus, pairs=pairs)


def test_past_16_gpus_a_cut_short_search_says_so_and_by_how_much() -> None:
    t = _mixed_node(72, 5)
    s = nvtopo.select_gpus(t, 36, deadline=0)
    assert len(s.gpus) == 36 and len(set(s.gpus)) == 36
    assert not s.optimal and 0.0 < s.gap <= 1.0
    assert s.to_json()["gap"] == s.gap
    assert "short" in s.explain()
    # Up to 16 GPUs the deadline never applies: always the proven optimum.
    small = _mixed_node(16, 5)
    exact = nvtopo.select_gpus(small, 8, deadline=0)
    assert exact.optimal and exact.gap == 0.0 and "gap" not in exact.to_json()
    with pytest.raises(SelectionError, match="deadline"):
        nvtopo.select_gpus(t, 2, deadline=-1)


def test_the_core_topology_travels_with_copies() -> None:
    import copy
    import pickle

    t = dgx1()
    nvtopo.select_gpus(t, 2)
    for other in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert nvtopo.select_gpus(other, 4, available=(0, 2, 3, 4, 5, 7)) == nvtopo.select_gpus(
            t, 4, available=(0, 2, 3, 4, 5, 7)
        )
    with pytest.raises(SelectionError, match="NodeTopology"):
        nvtopo.select_gpus(None, 2)  # type: ignore[arg-type]
