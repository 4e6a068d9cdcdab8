"""Documents read back share their decoded parts (NVLink records, fabric, pairs, NVSwitches,
NICs) by content, and nothing else: each node keeps its own GPUs, and a bad part is refused
with one line naming it."""

from __future__ import annotations

import base64
import copy
import dataclasses
import gzip
import json
from typing import Any

import pytest

import nvtopo
from nvtopo.dra.annotation import decode_topology
from nvtopo.dra.publish import cluster_slices
from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats import jsonio
from nvtopo.formats._parts import clear_parts
from nvtopo.kube.readback import cluster_from_objects
from nvtopo.model import Gpu, GpuPair, Nic, NodeTopology

DRIVER = "gpu.nvtopo.dev"


def _doc(name: str = "gb200-tray") -> dict[str, Any]:
    return jsonio.node_to_json(nvtopo.system(name))


def _fast(doc: dict[str, Any]) -> NodeTopology:
    return jsonio.node_from_json(doc, validate=False)


def _with_uuids(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for g in doc["gpus"]:
        g["uuid"] = f"GPU-{seed:08x}-0000-0000-0000-{g['index']:012x}"
    return doc


def test_equal_documents_with_their_own_uuids_keep_their_own_gpus() -> None:
    clear_parts()
    a, b = _fast(_with_uuids(_doc(), 1)), _fast(_with_uuids(_doc(), 2))
    assert [g.uuid for g in a.gpus] != [g.uuid for g in b.gpus]
    assert all(g.uuid is not None and g.uuid.startswith("GPU-00000001") for g in a.gpus)
    assert all(g.uuid is not None and g.uuid.startswith("GPU-00000002") for g in b.gpus)
    # The parts are one object each, and both read as the validating reader reads them.
    assert a.pairs is b.pairs and a.nics is b.nics and a.nvswitches is b.nvswitches
    assert a.gpus[0].nvlinks is b.gpus[0].nvlinks and a.gpus[0].fabric is b.gpus[0].fabric
    assert a == jsonio.node_from_json(_with_uuids(_doc(), 1))
    assert b == jsonio.node_from_json(_with_uuids(_doc(), 2))


def test_parts_that_differ_in_one_value_are_not_shared() -> None:
    clear_parts()
    doc = _doc()
    other = copy.deepcopy(doc)
    other["gpus"][1]["nvlinks"][3]["state"] = "down"
    other["gpus"][2]["fabric"]["state"] = "in_progress"
    other["pairs"][0]["nvlinks"] = 17
    a, b = _fast(doc), _fast(other)
    assert b.gpus[1].nvlinks[3].state == "down" and a.gpus[1].nvlinks[3].state == "up"
    assert b.gpus[2].fabric is not None and b.gpus[2].fabric.state == "in_progress"
    assert b.pairs[0].nvlinks == 17 and a.pairs[0].nvlinks == 18
    assert b.unfit_gpus == {1} and a.unfit_gpus == frozenset()
    assert b == jsonio.node_from_json(other)


def test_a_value_of_another_json_type_is_another_part() -> None:
    """``1`` and ``1.0`` hash alike in Python; the content key tells them apart, so a
    well-formed part never takes the value of a malformed one (or the reverse)."""
    clear_parts()
    doc = _doc()
    odd = copy.deepcopy(doc)
    for link in odd["gpus"][0]["nvlinks"]:
        link["version"] = float(link["version"])
    with pytest.raises(ValueError, match="nvlinks"):
        _fast(odd)  # checked when first seen: a version is an integer
    topo = _fast(doc)
    assert all(type(link.version) is int for link in topo.gpus[0].nvlinks)


def _nvlink_state(doc: dict[str, Any]) -> str:
    doc["gpus"][2]["nvlinks"][5]["state"] = "sideways"
    return "$.gpus[2].nvlinks[5].state: 'sideways'"


def _fabric_uuid(doc: dict[str, Any]) -> str:
    doc["gpus"][1]["fabric"]["clusterUuid"] = "rack-7"
    return "$.gpus[1].fabric.clusterUuid: 'rack-7'"


def _pair_count(doc: dict[str, Any]) -> str:
    doc["pairs"][2]["nvlinks"] = True
    return "$.pairs[2].nvlinks: True"


@pytest.mark.parametrize("spoil", [_nvlink_state, _fabric_uuid, _pair_count])
def test_a_bad_part_in_an_annotation_is_one_line_naming_it(spoil: Any) -> None:
    clear_parts()
    _fast(_with_uuids(_doc(), 4))  # the good parts are known: the bad one is another part
    doc = _with_uuids(_doc(), 3)
    expected = spoil(doc)
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    bad = "gzip+base64:" + base64.b64encode(gzip.compress(raw, mtime=0)).decode()
    with pytest.raises(ParseError) as err:
        decode_topology(bad, where="ResourceSlice n1-x-0")
    message = str(err.value)
    assert message.startswith(f"ResourceSlice n1-x-0: {expected}"), message
    assert "\n" not in message


def test_strict_reading_is_as_strict_after_parts_were_shared() -> None:
    """The validating reader checks the whole document whatever the shared parts hold."""
    clear_parts()
    _fast(_doc())
    doc = _doc()
    doc["gpus"][0]["nvlinks"][0]["version"] = 5.0
    with pytest.raises(ParseError, match=r"\$\.gpus\[0\]\.nvlinks\[0\]\.version"):
        NodeTopology.from_json(doc)


def test_a_cluster_read_back_shares_parts_and_keeps_each_nodes_gpus() -> None:
    clear_parts()
    cluster = nvtopo.cluster("gb200-nvl72x2")
    nodes = []
    for i, node in enumerate(cluster.nodes):
        gpus = tuple(
            dataclasses.replace(g, uuid=f"GPU-{i:08x}-0000-0000-0000-{g.index:012x}")
            for g in node.topology.gpus
        )
        nodes.append(dataclasses.replace(node, topology=node.topology.replace_gpus(gpus)))
    own = nvtopo.Cluster(tuple(nodes))
    slices = [s for pool in cluster_slices(own, driver=DRIVER).values() for s in pool]
    back = cluster_from_objects(slices, driver=DRIVER)
    assert len(back.nodes) == len(own.nodes)
    for mine, read in zip(own.nodes, sorted(back.nodes, key=lambda n: n.name), strict=True):
        assert read.name == mine.name and read.topology == mine.topology
    first, last = back.nodes[0].topology, back.nodes[-1].topology
    assert first.pairs is last.pairs and first.gpus[0].nvlinks is last.gpus[0].nvlinks
    assert first.gpus[0].fabric != last.gpus[0].fabric  # two racks, two NVLink domains
    assert nvtopo.ClusterState(back).topology_count == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((("X", "SYS"), ("SYS", "X")), None),
        ((("X", "SYS"), ("SYS", "SYS")), "NIC n1: path 'SYS' to NIC 1"),
        ((("X", "X"), ("SYS", "X")), "NIC n0: path 'X' to NIC 1"),
        ((("X", "PCI"), ("SYS", "X")), "NIC n0: path 'PCI' to NIC 1"),
        ((("X", ["SYS"]), ("SYS", "X")), "NIC n0: path ['SYS'] to NIC 1"),
    ],
)
def test_nic_rows_are_checked_cell_by_cell(rows: Any, message: str | None) -> None:
    nics = tuple(Nic(f"n{k}", nic_paths=row) for k, row in enumerate(rows))
    if message is None:
        assert NodeTopology(gpus=(Gpu(0),), nics=nics).nics == nics
        return
    with pytest.raises(TopologyError) as err:
        NodeTopology(gpus=(Gpu(0),), nics=nics)
    assert str(err.value) == message


def test_shared_pairs_and_nics_are_checked_again_for_other_gpus() -> None:
    """Pairs and NICs found right once are not taken as right for another GPU set."""
    pairs = (GpuPair(0, 1, nvlinks=4), GpuPair(1, 2, nvlinks=4))
    nics = (Nic("n0", gpu_paths=("PIX", "PXB", "SYS")),)
    three = tuple(Gpu(i) for i in range(3))
    ok = NodeTopology(gpus=three, pairs=pairs, nics=nics)
    assert NodeTopology(gpus=three, pairs=pairs, nics=nics) == ok
    with pytest.raises(TopologyError, match=r"pair \(1, 2\) does not name two GPUs"):
        NodeTopology(gpus=three[:2], pairs=pairs)
    with pytest.raises(TopologyError, match="NIC n0 has 3 GPU paths for 4 GPUs"):
        NodeTopology(gpus=(*three, Gpu(3)), pairs=pairs, nics=nics)
    gapped = (Gpu(0), Gpu(1), Gpu(5))
    with pytest.raises(TopologyError, match=r"pair \(1, 2\)"):
        NodeTopology(gpus=gapped, pairs=pairs, nics=nics)
