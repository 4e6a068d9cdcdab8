"""Optimal partition groups (the ``set<k>`` attributes)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.exceptions import SelectionError
from nvtopo.model import NodeTopology
from tests.reference import select_reference
from tests.test_select import b200_with_lost_gpu, dgx1, topologies


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topo=topologies(max_gpus=9), k=st.integers(1, 5))
def test_partition_is_repeated_best_sets(topo: NodeTopology, k: int) -> None:
    groups = nvtopo.partition(topo, k)
    assert len(groups) == len(topo.gpus) // k
    left = list(topo.gpu_indices)
    for g in groups:
        assert g == select_reference(topo, k, available=tuple(left))["gpus"]
        left = [i for i in left if i not in g]
    flat = [i for g in groups for i in g]
    assert len(flat) == len(set(flat))


def test_dgx1_splits_into_quads_and_nvlink_pairs() -> None:
    assert nvtopo.partition(dgx1(), 4) == ((0, 1, 2, 3), (4, 5, 6, 7))
    pairs = nvtopo.partition(dgx1(), 2)
    assert all(dgx1().path_class(a, b) == "NV2" for a, b in pairs)


def test_lost_gpu_goes_last() -> None:
    groups = nvtopo.partition(b200_with_lost_gpu(2), 2)
    assert all(2 not in g for g in groups[:-1])
    assert 2 in groups[-1]


def test_sizes_and_errors() -> None:
    assert nvtopo.partition(dgx1(), 3) == nvtopo.partition(dgx1(), 3)
    assert len(nvtopo.partition(dgx1(), 3)) == 2
    assert nvtopo.partition(dgx1(), 9) == ()
    assert nvtopo.partition(dgx1(), 8) == (tuple(range(8)),)
    with pytest.raises(SelectionError, match="group size must be"):
        nvtopo.partition(dgx1(), 0)
    with pytest.raises(SelectionError, match="group size must be"):
        nvtopo.partition(dgx1(), -2)
