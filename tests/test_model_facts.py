"""Facts the core owns, read by the model rather than restated (DESIGN, layers)."""

from __future__ import annotations

import inspect

import pytest

import nvtopo._core as _core
import nvtopo.model.topology as topology
from nvtopo.model import MAX_NVLINKS, Gpu, GpuPair, NodeTopology, nvlink_bandwidth
from nvtopo.select import core_topology


@pytest.mark.parametrize("generation", [None, 0, 1, 2, 3, 4, 5, 6, 9])
def test_nvlink_bandwidth_is_the_cores(generation: int | None) -> None:
    t = NodeTopology(
        gpus=(Gpu(0, nvlink_generation=generation), Gpu(1, nvlink_generation=generation)),
        pairs=(GpuPair(0, 1, nvlinks=1),),
    )
    assert core_topology(t).score(0, 1) == 1000 + nvlink_bandwidth(generation)


def test_max_nvlinks_is_the_cores_and_no_table_is_restated() -> None:
    assert MAX_NVLINKS == _core.MAX_NVLINKS
    source = inspect.getsource(topology)
    assert "_NVLINK_GBPS" not in source and "= 64" not in source


@pytest.mark.parametrize(("first", "second"), [(1, 5), (5, 1), (None, 3), (4, None)])
def test_pair_bandwidth_is_symmetric_and_matches_the_core(
    first: int | None, second: int | None
) -> None:
    """GPUs of different NVLink generations: the core scores the pair one way both ways."""
    t = NodeTopology(
        gpus=(Gpu(0, nvlink_generation=first), Gpu(1, nvlink_generation=second)),
        pairs=(GpuPair(0, 1, nvlinks=4),),
    )
    assert t.pair_bandwidth(0, 1) == t.pair_bandwidth(1, 0)
    core = core_topology(t)
    assert core.score(0, 1) == core.score(1, 0) == 1000 + t.pair_bandwidth(1, 0)
