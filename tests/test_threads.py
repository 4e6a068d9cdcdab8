"""The core releases the GIL: many Python threads at once get the single-thread answers."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import nvtopo
from nvtopo.exceptions import InfeasibleError
from nvtopo.model.cluster import Cluster, ClusterNode
from tests.test_place import nvswitch
from tests.test_select import b200_with_lost_gpu, dgx1

THREADS = 8


def _cases(seed: int, count: int) -> list[tuple[int, tuple[int, ...]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        avail = tuple(sorted(rng.sample(range(8), rng.randint(1, 8))))
        cases.append((rng.randint(1, len(avail)), avail))
    return cases


def test_select_from_many_threads() -> None:
    topologies = [dgx1(), b200_with_lost_gpu(5)]
    cases = _cases(11, 400)
    expected = [[nvtopo.select_gpus(t, k, available=a) for k, a in cases] for t in topologies]

    def work(worker: int) -> bool:
        t = topologies[worker % 2]
        want = expected[worker % 2]
        return all(
            nvtopo.select_gpus(t, k, available=a) == want[i] for i, (k, a) in enumerate(cases)
        )

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(work, range(THREADS * 4)))


def test_cluster_state_from_many_threads() -> None:
    tray = nvswitch(4)
    nodes = tuple(
        ClusterNode(f"r{r}-t{t:02d}", tray, clique=f"u-{r}.0") for r in range(4) for t in range(18)
    )
    state = nvtopo.ClusterState(Cluster(nodes))
    start = state.free_count

    def work(worker: int) -> list[tuple[str, int]]:
        rng = random.Random(worker)
        held = []
        taken: list[tuple[str, int]] = []
        for _ in range(60):
            try:
                a = state.allocate(gpus=rng.choice([2, 4, 8]), nodes=rng.choice([None, 1, 2]))
            except InfeasibleError:
                continue
            held.append(a)
            if len(held) > 3:
                state.release(held.pop(0))
        for a in held:
            taken += [(n.name, g) for n in a.placement.nodes for g in n.gpus]
        return taken

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))
    everything = [x for r in results for x in r]
    assert len(everything) == len(set(everything))
    assert state.free_count + len(everything) == start
