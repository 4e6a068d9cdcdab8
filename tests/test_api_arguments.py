"""The Python API raises only NvtopoError subclasses for bad arguments, and takes the
forms a user reaches for first (bytes from ``subprocess.check_output``, a bare GPU count)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest

import nvtopo
from nvtopo.exceptions import NvtopoError, ParseError, SelectionError

TOPO = Path(__file__).parent / "data" / "gb200-tray-topo-m.txt"


def test_from_nvidia_smi_takes_the_bytes_check_output_returns() -> None:
    text = TOPO.read_text()
    expected = nvtopo.NodeTopology.from_nvidia_smi(text)
    assert nvtopo.NodeTopology.from_nvidia_smi(text.encode()) == expected
    assert nvtopo.NodeTopology.from_nvidia_smi(codecs.BOM_UTF8 + text.encode()) == expected
    assert nvtopo.NodeTopology.from_nvidia_smi(text.encode("utf-16")) == expected


@pytest.mark.parametrize("bad", [None, 42, ["GPU0"], b"\xff\xfe\xfd"[1:]])
def test_from_nvidia_smi_refuses_what_is_no_text(bad: Any) -> None:
    with pytest.raises(ParseError) as refused:
        nvtopo.NodeTopology.from_nvidia_smi(bad)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("bad", [None, "dgx-h100", 3])
def test_select_gpus_without_a_topology_is_a_selection_error(bad: Any) -> None:
    with pytest.raises(SelectionError, match="select_gpus\\(\\) needs a NodeTopology, got"):
        nvtopo.select_gpus(bad, 2)


def test_select_gpus_on_a_cluster_points_at_place() -> None:
    with pytest.raises(SelectionError, match=r"for a cluster use nvtopo\.place"):
        nvtopo.select_gpus(nvtopo.cluster("gb200-nvl72"), 2)


def test_place_on_a_node_points_at_select_gpus() -> None:
    with pytest.raises(SelectionError, match=r"for one node use nvtopo\.select_gpus"):
        nvtopo.place(nvtopo.system("dgx-h100"), gpus=2)
    with pytest.raises(NvtopoError):
        nvtopo.place(None, gpus=2)  # type: ignore[arg-type]


def test_place_takes_a_bare_gpu_count_like_select_gpus() -> None:
    racks = nvtopo.cluster("gb200-nvl72x4")
    by_count = nvtopo.place(racks, 16, nodes=4)
    assert by_count == nvtopo.place(racks, gpus=16, nodes=4)
    assert len(by_count.nodes) == 4
    with pytest.raises(SelectionError, match="GPU count given twice"):
        nvtopo.place(racks, 16, gpus=8)
    with pytest.raises(NvtopoError):
        nvtopo.place(racks, True)  # type: ignore[arg-type]


def test_cluster_state_and_partition_check_their_arguments_too() -> None:
    from nvtopo.place import ClusterState

    with pytest.raises(SelectionError, match=r"partition\(\) needs a NodeTopology"):
        nvtopo.partition(None, 2)  # type: ignore[arg-type]
    for bad in (None, nvtopo.system("dgx-h100")):
        with pytest.raises(SelectionError, match=r"ClusterState\(\) needs a Cluster"):
            ClusterState(bad)  # type: ignore[arg-type]
    state = ClusterState(nvtopo.cluster("gb200-nvl72x2"))
    assert state.place(8, nodes=2) == state.place(gpus=8, nodes=2)
    taken = state.allocate(8, nodes=2)
    assert len(taken.placement.nodes) == 2


@pytest.mark.parametrize("bad", [None, 3, ["gpus"]])
def test_from_json_refuses_what_is_no_document(bad: Any) -> None:
    with pytest.raises(ParseError, match="expected an nvtopo JSON document"):
        nvtopo.NodeTopology.from_json(bad)
