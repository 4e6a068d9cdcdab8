"""The nvtopo.dev/v1 JSON format: lossless round trips and one-line errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from nvtopo import Cluster, NodeTopology, ParseError
from nvtopo.formats.jsonio import cluster_from_json, cluster_to_json, dumps, node_to_json, schema
from tests.strategies import clusters, topologies


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_node_round_trip_is_lossless(t: NodeTopology) -> None:
    text = dumps(node_to_json(t))
    back = NodeTopology.from_json(text)
    assert back == t
    assert back.numa_cpus == t.numa_cpus


@settings(max_examples=30, deadline=None)
@given(clusters())
def test_cluster_round_trip_is_lossless(c: Cluster) -> None:
    back = cluster_from_json(dumps(cluster_to_json(c)))
    assert back == c
    assert [n.domain for n in back.nodes] == [n.domain for n in c.nodes]


def test_shared_topologies_are_written_once() -> None:
    from nvtopo.model import Gpu
    from nvtopo.model.cluster import ClusterNode

    t = NodeTopology(gpus=(Gpu(0), Gpu(1)))
    c = Cluster(tuple(ClusterNode(name=f"n{i}", topology=t) for i in range(5)))
    doc = cluster_to_json(c)
    assert len(doc["topologies"]) == 1
    assert all(n["topologyRef"] == "t0" for n in doc["nodes"])
    back = cluster_from_json(doc)
    assert back.nodes[0].topology is back.nodes[4].topology


def test_schema_is_shipped_and_names_the_api_version() -> None:
    s = schema()
    assert s["properties"]["apiVersion"]["const"] == "nvtopo.dev/v1"


def _node_doc() -> dict:
    return {
        "apiVersion": "nvtopo.dev/v1",
        "kind": "NodeTopology",
        "gpus": [{"index": 0}, {"index": 1}],
        "pairs": [{"a": 0, "b": 1, "nvlinks": 4}],
    }


def test_truncated_json_names_file_and_line() -> None:
    text = json.dumps(_node_doc(), indent=2)
    with pytest.raises(ParseError) as err:
        NodeTopology.from_json(text[: len(text) // 2], source="node.json")
    msg = str(err.value)
    assert msg.startswith("node.json:")
    assert "invalid JSON" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(apiVersion="nvtopo.dev/v2"), "$.apiVersion"),
        (lambda d: d["gpus"][1].update(index="one"), "$.gpus[1].index"),
        (lambda d: d["pairs"][0].update(pcie="QPI"), "$.pairs[0].pcie"),
        (lambda d: d["gpus"][0].update(cpuAffinity="0-x"), "$.gpus[0].cpuAffinity"),
        (lambda d: d.update(gpus=[]), "$.gpus"),
        (lambda d: d["gpus"][0].update(colour="green"), "$.gpus[0]"),
    ],
)
def test_schema_errors_name_the_json_path(mutate, expected: str) -> None:
    doc = _node_doc()
    mutate(doc)
    with pytest.raises(ParseError) as err:
        NodeTopology.from_json(json.dumps(doc), source="bad.json")
    assert str(err.value).startswith(f"bad.json: {expected}")


def test_inconsistent_pairs_are_refused() -> None:
    doc = _node_doc()
    doc["pairs"].append({"a": 0, "b": 1})
    with pytest.raises(ParseError, match=r"bad.json: pair \(0, 1\) is given twice"):
        NodeTopology.from_json(json.dumps(doc), source="bad.json")
    doc = _node_doc()
    doc["pairs"][0]["b"] = 5
    with pytest.raises(ParseError, match="does not name two GPUs"):
        NodeTopology.from_json(json.dumps(doc), source="bad.json")


def test_cluster_with_unknown_topology_ref() -> None:
    doc = {
        "apiVersion": "nvtopo.dev/v1",
        "kind": "Cluster",
        "nodes": [{"name": "a", "topologyRef": "missing"}],
    }
    with pytest.raises(ParseError, match=r"c.json: \$.nodes\[0\] \(a\): topologyRef 'missing'"):
        cluster_from_json(json.dumps(doc), source="c.json")


def test_cluster_free_gpu_not_on_node() -> None:
    doc = {
        "apiVersion": "nvtopo.dev/v1",
        "kind": "Cluster",
        "nodes": [{"name": "a", "topology": {"gpus": [{"index": 0}]}, "freeGpus": [3]}],
    }
    with pytest.raises(ParseError, match="free GPU 3 is not on the node"):
        cluster_from_json(json.dumps(doc), source="c.json")


@pytest.mark.parametrize("name", ["dgx-h100-topo-m.txt", "pcie-8x-rtx4090-topo-m.txt"])
def test_nic_to_nic_paths_of_a_capture_round_trip(name: str) -> None:
    from pathlib import Path

    from nvtopo.formats.smi_topo import parse_topo_matrix

    text = (Path(__file__).parent / "data" / "captures" / name).read_text()
    t = parse_topo_matrix(text)
    assert all(len(n.nic_paths) == len(t.nics) for n in t.nics)
    doc = json.loads(dumps(node_to_json(t)))
    assert doc["nics"][0]["nicPaths"][0] == "X"
    assert NodeTopology.from_json(doc) == t
