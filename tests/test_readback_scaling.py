"""Reading a cluster back looks each pool's allocations up once: work linear in pools + claims.

Not a timing: the pool names of the allocations count how often they are compared, which
is what grows with pools × allocations when every pool scans every allocated device.
"""

from __future__ import annotations

from typing import Any

import pytest

import nvtopo
from nvtopo.dra.publish import cluster_slices
from nvtopo.kube import readback

DRIVER = "gpu.nvtopo.dev"


class _CountedPool(str):
    """A pool name that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        type(self).compared += 1
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        type(self).compared += 1
        return str.__ne__(self, other)

    __hash__ = str.__hash__


def test_allocations_are_looked_up_per_pool_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = nvtopo.cluster("gb200-nvl72x4")  # 72 pools
    slices = [s for pool in cluster_slices(cluster, driver=DRIVER).values() for s in pool]
    busy = {(_CountedPool(n.name), f"gpu-{g}") for n in cluster.nodes for g in (0, 1)}
    real = readback.allocated_devices

    def counted(claims: Any, driver: str) -> set[tuple[str, str]]:
        return set(busy) if driver == DRIVER else real(claims, driver)

    monkeypatch.setattr(readback, "allocated_devices", counted)
    _CountedPool.compared = 0
    back = readback.cluster_from_objects(slices, [], driver=DRIVER)
    assert all(n.free == (2, 3) for n in back.nodes)
    pools, allocations = len(cluster.nodes), len(busy)
    # A scan compares every allocation with every pool: 72 × 144 = 10,368.
    assert _CountedPool.compared <= 2 * (pools + allocations)


def test_the_cluster_is_built_without_gc_pauses_and_gc_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    cluster = nvtopo.cluster("gb200-nvl72")
    slices = [s for pool in cluster_slices(cluster, driver=DRIVER).values() for s in pool]
    seen: list[bool] = []
    real = readback._node

    def watched(pool: str, found: list[Any]) -> Any:
        seen.append(gc.isenabled())
        return real(pool, found)

    monkeypatch.setattr(readback, "_node", watched)
    assert gc.isenabled()
    readback.cluster_from_objects(slices, [], driver=DRIVER)
    assert seen and not any(seen)
    assert gc.isenabled()
    gc.disable()  # a caller that turned it off keeps it off
    try:
        readback.cluster_from_objects(slices, [], driver=DRIVER)
        assert not gc.isenabled()
    finally:
        gc.enable()
