"""The benchmark baselines do what they claim, on small hand-made cases."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvtopo
from benches.baselines import (
    DidNotFinish,
    ScoreMatrix,
    SimpleClusterState,
    brute_force_select,
    count_splits,
    device_plugin_best_effort,
    device_plugin_pair_score,
    first_fit,
    first_fit_place,
    random_place,
)
from nvtopo.catalog import with_lost_nvlinks
from nvtopo.model import Gpu, GpuPair, NodeTopology, PcieClass
from tests.strategies import topologies


def node(n: int, pairs: list[GpuPair], numa: list[int] | None = None, gen: int = 4) -> NodeTopology:
    gpus = tuple(
        Gpu(index=i, numa_affinity=(numa[i],) if numa else (), nvlink_generation=gen)
        for i in range(n)
    )
    return NodeTopology(gpus=gpus, pairs=tuple(pairs))


def nvswitch_node(
    n: int,
    nvlinks: int = 18,
    lost: tuple[int, ...] = (),
    pcie: dict[tuple[int, int], PcieClass] | None = None,
) -> NodeTopology:
    """Every pair NV<nvlinks> through NVSwitch, except pairs touching a GPU in ``lost``."""
    pcie = pcie or {}
    pairs = []
    for a, b in itertools.combinations(range(n), 2):
        nv = 0 if a in lost or b in lost else nvlinks
        pairs.append(GpuPair(a, b, nvlinks=nv, pcie=pcie.get((a, b), "SYS"), via_nvswitch=True))
    return node(n, pairs, gen=5)


# -- device-plugin best effort --------------------------------------------------------------


def test_device_plugin_picks_the_pair_with_most_direct_nvlinks() -> None:
    topo = node(
        4,
        [
            GpuPair(0, 1, pcie="NODE"),
            GpuPair(0, 2, nvlinks=4, pcie="SYS"),
            GpuPair(0, 3, nvlinks=1, pcie="SYS"),
            GpuPair(1, 2, pcie="SYS"),
            GpuPair(1, 3, nvlinks=1, pcie="SYS"),
            GpuPair(2, 3, pcie="NODE"),
        ],
    )
    assert device_plugin_pair_score(topo, 0, 2) == 10 + 400
    assert device_plugin_pair_score(topo, 0, 1) == 20
    assert device_plugin_best_effort(topo, 2) == (0, 2)
    assert device_plugin_best_effort(topo, 2, available=[0, 1, 3]) in {(0, 3), (1, 3)}


def test_device_plugin_scores_whole_splits_not_single_groups() -> None:
    # (0, 1) has the most NVLinks, but the split {0,2}{1,3} scores 600 against {0,1}{2,3}'s 400+.
    topo = node(
        4,
        [
            GpuPair(0, 1, nvlinks=4, pcie="SYS"),
            GpuPair(0, 2, nvlinks=3, pcie="SYS"),
            GpuPair(1, 3, nvlinks=3, pcie="SYS"),
        ],
    )
    assert device_plugin_best_effort(topo, 2) == (0, 2)
    assert brute_force_select(topo, 2)[0] == (0, 1)


def test_device_plugin_gives_nvswitch_pairs_no_nvlink_credit() -> None:
    topo = nvswitch_node(4, pcie={(0, 3): "PIX", (1, 2): "NODE"})
    assert device_plugin_pair_score(topo, 0, 3) == 50
    assert device_plugin_pair_score(topo, 0, 1) == 10
    assert device_plugin_best_effort(topo, 2) == (0, 3)


def test_device_plugin_counts_unknown_pcie_as_sys() -> None:
    topo = node(2, [GpuPair(0, 1, pcie=None)])
    assert device_plugin_pair_score(topo, 0, 1) == 10


def test_device_plugin_picks_gpu_that_lost_its_nvlinks_when_pcie_favours_it() -> None:
    topo = nvswitch_node(4, lost=(2,), pcie={(1, 2): "PIX"})
    picked = device_plugin_best_effort(topo, 2)
    best, score = brute_force_select(topo, 2)
    assert picked == (1, 2)
    assert 2 not in best
    assert ScoreMatrix(topo).score(picked).bottleneck < score.bottleneck


def test_device_plugin_split_count_and_budget() -> None:
    assert count_splits(4, 2) == 3
    assert count_splits(5, 2) == 15
    assert count_splits(16, 15) == 16
    assert count_splits(16, 2) == 2_027_025
    topo = nvswitch_node(16)
    with pytest.raises(DidNotFinish, match="did not finish"):
        device_plugin_best_effort(topo, 2, budget_s=0.0)
    picked = device_plugin_best_effort(topo, 15)  # 16 splits only: one per leftover GPU
    assert len(picked) == 15 and set(picked) < set(range(16))


def test_device_plugin_rejects_bad_k() -> None:
    topo = nvswitch_node(4)
    with pytest.raises(ValueError, match="out of range"):
        device_plugin_best_effort(topo, 5)
    with pytest.raises(ValueError, match="not on the node"):
        device_plugin_best_effort(topo, 1, available=[7])


# -- first fit --------------------------------------------------------------------------------


def test_first_fit_returns_the_lowest_available() -> None:
    topo = nvswitch_node(8)
    assert first_fit(topo, 3) == (0, 1, 2)
    assert first_fit(topo, 3, available=[7, 5, 2, 6]) == (2, 5, 6)
    with pytest.raises(ValueError):
        first_fit(topo, 3, available=[1, 2])


# -- brute-force reference ------------------------------------------------------------------


def test_brute_force_prefers_bottleneck_then_total_then_numa_then_cut() -> None:
    # Ring 0-1-2-3 of NV2 links plus a diagonal NV1: best pair is an NV2 pair.
    topo = node(
        4,
        [
            GpuPair(0, 1, nvlinks=2),
            GpuPair(1, 2, nvlinks=2),
            GpuPair(2, 3, nvlinks=2),
            GpuPair(0, 3, nvlinks=2),
            GpuPair(0, 2, nvlinks=1),
        ],
        numa=[0, 0, 1, 1],
    )
    gpus, score = brute_force_select(topo, 2)
    # (0,1) and (2,3) share a NUMA node; of those (0,1) and (2,3) have equal cut: lowest wins.
    assert gpus == (0, 1)
    assert score.bottleneck == 1050 and score.numa_keys == 1
    gpus3, score3 = brute_force_select(topo, 3)
    assert gpus3 in {(0, 1, 2), (0, 2, 3)}
    assert score3.bottleneck == 1025
    assert brute_force_select(topo, 2, required=[3])[0] in {(0, 3), (2, 3)}
    assert brute_force_select(topo, 2, available=[1, 3]) == (
        (1, 3),
        ScoreMatrix(topo).score((1, 3), [1, 3]),
    )


def test_brute_force_single_gpu_minimises_cut() -> None:
    topo = node(3, [GpuPair(0, 1, nvlinks=2), GpuPair(1, 2, nvlinks=2), GpuPair(0, 2, pcie="PIX")])
    # A lone GPU leaves the best-connected pair free: GPU 0 or 2 (cut 1050+50), not 1.
    assert brute_force_select(topo, 1)[0] == (0,)


def test_score_matrix_uses_contract_scores() -> None:
    topo = nvswitch_node(4, lost=(2,), pcie={(1, 2): "PIX"})
    m = ScoreMatrix(topo)
    assert m.pair(0, 1) == 1000 + 18 * 50
    assert m.pair(1, 2) == 50
    assert m.pair(0, 2) == 10


# -- cluster placers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    gpus: int
    nodes: int | None = None


def small_cluster() -> SimpleClusterState:
    return SimpleClusterState(
        [
            ("n3", "c.1", range(4)),
            ("n1", "c.2", [1, 3]),
            ("n2", "c.1", range(4)),
            ("n0", "c.2", range(4)),
            ("n4", None, range(4)),
        ]
    )


def test_first_fit_place_takes_first_nodes_in_name_order_ignoring_cliques() -> None:
    state = small_cluster()
    p = first_fit_place(state, Req(8, nodes=2))
    assert p is not None
    assert p.nodes == (("n0", (0, 1, 2, 3)), ("n2", (0, 1, 2, 3)))
    assert p.cliques == ("c.2", "c.1")
    job = state.take(p)
    assert first_fit_place(state, Req(2, nodes=1)).nodes == (("n1", (1, 3)),)  # type: ignore[union-attr]
    assert first_fit_place(state, Req(12, nodes=3)) is None
    state.release(job)
    assert state.free_count == 18


def test_random_place_uses_only_nodes_with_room_and_is_seeded() -> None:
    state = small_cluster()
    picks = {random_place(state, Req(3, nodes=1), random.Random(s)).nodes[0][0] for s in range(40)}  # type: ignore[union-attr]
    assert picks == {"n0", "n2", "n3", "n4"}
    a = random_place(state, Req(8, nodes=2), random.Random(5))
    b = random_place(state, Req(8, nodes=2), random.Random(5))
    assert a == b and a is not None and a.gpu_count == 8
    assert random_place(state, Req(16, nodes=4), random.Random(0)) is not None
    assert random_place(state, Req(20, nodes=5), random.Random(0)) is None


def test_cluster_state_refuses_double_booking() -> None:
    state = small_cluster()
    p = first_fit_place(state, Req(4, nodes=1))
    assert p is not None
    state.take(p)
    with pytest.raises(ValueError, match="not all free"):
        state.take(p)
    with pytest.raises(ValueError, match="split evenly"):
        first_fit_place(state, Req(5, nodes=2))


# -- the reference against the core, and the runner ----------------------------------------


@pytest.mark.parametrize("name", ["dgx1-v100", "dgx-h100", "hgx-b200", "pcie-8x-l40s"])
def test_brute_force_agrees_with_select_gpus_on_catalog_nodes(name: str) -> None:
    topo = nvtopo.system(name)
    if name == "hgx-b200":
        topo = with_lost_nvlinks(topo, [2])
    m = ScoreMatrix(topo)
    rng = random.Random(name)
    for k in range(1, len(topo.gpus) + 1):
        for _ in range(4):
            avail = sorted(rng.sample(topo.gpu_indices, rng.randint(k, len(topo.gpus))))
            gpus, score = brute_force_select(topo, k, avail, matrix=m)
            sel = nvtopo.select_gpus(topo, k, available=avail)
            assert sel.gpus == gpus, (name, k, avail)
            assert (sel.bottleneck, sel.total, sel.numa_keys, sel.cut) == (
                score.bottleneck,
                score.total,
                score.numa_keys,
                score.cut,
            )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_brute_force_agrees_with_select_gpus_on_random_topologies(data: st.DataObject) -> None:
    topo = data.draw(topologies(max_gpus=7))
    avail = data.draw(st.lists(st.sampled_from(topo.gpu_indices), min_size=1, unique=True))
    k = data.draw(st.integers(1, len(avail)))
    required = data.draw(st.lists(st.sampled_from(avail), max_size=k, unique=True))
    gpus, score = brute_force_select(topo, k, avail, required)
    sel = nvtopo.select_gpus(topo, k, available=avail, required=required)
    assert sel.gpus == gpus
    assert (sel.bottleneck, sel.total, sel.numa_keys, sel.cut) == (
        score.bottleneck,
        score.total,
        score.numa_keys,
        score.cut,
    )


def test_runner_quick_run_writes_a_report(tmp_path: Path) -> None:
    from benches.run import main

    out = tmp_path / "RESULTS.md"
    assert main(["--quick", "--output", str(out)]) == 0
    text = out.read_text()
    assert "| cores |" in text and "--quick" in text
    for title in (
        "## GPU sets on one node",
        "## Multi-node placement",
        "## Job trace",
        "## DRA ResourceSlices",
    ):
        assert title in text
    exact = next(line for line in text.splitlines() if line.startswith("| `select_gpus` returns"))
    assert exact.endswith("| met |"), exact
    assert "| nvtopo | 0/5 |" in text  # never picks the GPU that lost its NVLinks
    assert "failed" not in text
