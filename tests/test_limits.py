"""One table of limits (nvtopo.model.limits) at the schema and in every parser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nvtopo
from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats.jsonio import cluster_from_json, node_from_json, node_to_json, schema
from nvtopo.formats.smi_topo import parse_topo_matrix
from nvtopo.formats.smi_xml import parse_smi_xml
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.limits import LIMITS, MAX_CLUSTER_NODES, MAX_GPUS, MAX_NICS

CAPTURES = Path(__file__).parent / "data" / "captures"
XML = (CAPTURES / "gb200-tray-smi-q-x.xml").read_text()


def _bounds(node: Any, name: str, found: list[tuple[int | None, int | None]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name and isinstance(value, dict) and value.get("type") == "integer":
                found.append((value.get("minimum"), value.get("maximum")))
            _bounds(value, name, found)
    elif isinstance(node, list):
        for value in node:
            _bounds(value, name, found)


@pytest.mark.parametrize("name", sorted(set(LIMITS) - {"cpu", "index", "nvlinks", "gpuLinks"}))
def test_the_schema_bounds_each_number_by_the_table(name: str) -> None:
    found: list[tuple[int | None, int | None]] = []
    _bounds(schema(), name, found)
    assert found, f"{name} is not in the schema"
    assert set(found) == {(LIMITS[name].minimum, LIMITS[name].maximum)}


def test_index_and_nvlink_bounds_are_the_tables() -> None:
    defs = schema()["$defs"]
    assert defs["index"]["maximum"] == LIMITS["index"].maximum
    assert defs["pair"]["properties"]["nvlinks"]["maximum"] == LIMITS["nvlinks"].maximum
    assert defs["nodeBody"]["properties"]["gpus"]["maxItems"] == MAX_GPUS
    assert defs["nodeBody"]["properties"]["nics"]["maxItems"] == MAX_NICS
    assert defs["clusterDocument"]["properties"]["nodes"]["maxItems"] == MAX_CLUSTER_NODES


def _node(**gpu: Any) -> dict[str, Any]:
    return {"apiVersion": "nvtopo.dev/v1", "kind": "NodeTopology", "gpus": [{"index": 0, **gpu}]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"memoryMiB": 1e30}', "is not of type 'integer'"),
        ('{"memoryMiB": 80.0}', "is not of type 'integer'"),
        ('{"memoryMiB": 1099511627776}', "is greater than the maximum of 1073741824"),
        ('{"numaNode": 100000}', "is greater than the maximum of 1023"),
        ('{"platform": {"slot": -1}}', "is less than the minimum of 0"),
        ('{"fabric": {"cliqueId": 99999999999999999999}}', "maximum of 4294967295"),
        ('{"cpuAffinity": "99999999999-1"}', "ascending ranges"),
        ('{"cpuAffinity": "0-99999"}', "CPU 99999 in '0-99999' is out of range"),
    ],
)
def test_json_numbers_out_of_range_are_refused(text: str, expected: str) -> None:
    raw = json.dumps(_node()).replace('{"index": 0}', '{"index": 0, ' + text[1:])
    with pytest.raises(ParseError, match=re.escape(expected)):
        node_from_json(raw)


def test_memory_at_the_limit_makes_an_exact_quantity() -> None:
    from nvtopo.dra.attributes import memory_quantity

    most = LIMITS["memoryMiB"].maximum
    t = node_from_json(json.dumps(_node(memoryMiB=most)))
    assert memory_quantity(t.gpu(0).memory_mib or 0) == "1Pi"


def test_duplicate_gpu_uuids_inside_a_node_are_refused() -> None:
    doc = _node(uuid="GPU-1")
    doc["gpus"].append({"index": 1, "uuid": "GPU-1"})
    with pytest.raises(ParseError, match="GPUs 0 and 1 have the same UUID GPU-1"):
        node_from_json(json.dumps(doc))
    same = XML.replace(nvtopo.formats.smi_xml.parse_smi_xml(XML).gpu(1).uuid or "", "GPU-x")
    same = same.replace(nvtopo.formats.smi_xml.parse_smi_xml(XML).gpu(2).uuid or "", "GPU-x")
    with pytest.raises(ParseError, match="GPUs 1 and 2 have the same UUID GPU-x"):
        parse_smi_xml(same)


def test_an_xml_report_whose_gpu_count_disagrees_is_refused() -> None:
    with pytest.raises(ParseError, match=r"<attached_gpus> says 5, the report has 4 <gpu>"):
        parse_smi_xml(
            XML.replace("<attached_gpus>4</attached_gpus>", "<attached_gpus>5</attached_gpus>")
        )


def test_an_xml_clique_id_past_nvml_range_is_refused_not_written() -> None:
    big = re.sub(r"<cliqueId>\d+</cliqueId>", "<cliqueId>99999999999999999999</cliqueId>", XML)
    with pytest.raises(ParseError, match="cliqueId> is 99999999999999999999, more than"):
        parse_smi_xml(big)
    # What the parser accepts, `file:` reads back.
    top = re.sub(r"<cliqueId>\d+</cliqueId>", "<cliqueId>4294967295</cliqueId>", XML)
    t = parse_smi_xml(top)
    assert node_from_json(json.dumps(node_to_json(t))) == t


def test_xml_numbers_out_of_range_are_refused() -> None:
    huge = re.sub(r"<total>\d+ MiB</total>", "<total>99999999999 MiB</total>", XML, count=1)
    with pytest.raises(ParseError, match="more than 1073741824"):
        parse_smi_xml(huge)
    minor = re.sub(r"<minor_number>\d+</minor_number>", "<minor_number>99999</minor_number>", XML)
    with pytest.raises(ParseError, match="<minor_number> is 99999, out of range"):
        parse_smi_xml(minor)


def _matrix(gpus: int) -> str:
    names = [f"GPU{i}" for i in range(gpus)]
    rows = ["\t" + "\t".join([*names, "CPU Affinity", "NUMA Affinity", "GPU NUMA ID"])]
    for i in range(gpus):
        cells = [" X " if i == j else "SYS" for j in range(gpus)]
        rows.append("\t".join([names[i], *cells, "0-7", "0", "N/A"]))
    return "\n".join(rows) + "\n"


def test_an_impossible_matrix_is_refused_at_its_header() -> None:
    parse_topo_matrix(_matrix(MAX_GPUS))  # the largest legal node reads
    # A whole 2,000-GPU matrix (4 million cells) is refused at its header, not read first.
    with pytest.raises(ParseError, match=f"header names 2000 GPUs; a node has at most {MAX_GPUS}"):
        parse_topo_matrix(_matrix(2000))


def test_matrix_affinity_numbers_out_of_range_are_refused() -> None:
    text = _matrix(2).replace("0-7", "0-99999", 1)
    with pytest.raises(ParseError, match="CPU ids up to 65535"):
        parse_topo_matrix(text)
    text = _matrix(2).replace("N/A", "5000", 1)
    with pytest.raises(ParseError, match="not a number up to 1023"):
        parse_topo_matrix(text)


def test_a_cluster_past_the_node_limit_is_refused_before_the_schema_check() -> None:
    nodes = [{"name": f"n{i}", "system": "gb200-tray"} for i in range(MAX_CLUSTER_NODES + 1)]
    doc = {"apiVersion": "nvtopo.dev/v1", "kind": "Cluster", "nodes": nodes}
    with pytest.raises(ParseError, match=f"nodes; a cluster has at most {MAX_CLUSTER_NODES}"):
        cluster_from_json(doc)


def test_the_model_refuses_duplicate_uuids() -> None:
    with pytest.raises(TopologyError, match="same UUID"):
        NodeTopology(gpus=(Gpu(0, uuid="GPU-a"), Gpu(1, uuid="GPU-a")))


# -- large cluster documents: the schema's verdict, at a fraction of its cost ---------------

_UUID = "5cd30dc8-2f7e-4c3d-9a51-0e0f3a7d2b11"
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 1100),
    st.sampled_from(["", "a", "gb200-tray", f"{_UUID}.7", f"{_UUID}.12345678901", "x" * 254]),
    st.lists(st.integers(-1, 1030), max_size=3),
    st.lists(st.sampled_from([0, 0.0, 1.5, True, "0"]), max_size=2),
)
_keys = st.sampled_from(
    ["name", "system", "topologyRef", "clique", "freeGpus", "inComputeDomain", "other"]
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_the_fast_node_check_vouches_only_for_what_the_schema_accepts(node: dict[str, Any]) -> None:
    from nvtopo.formats.jsonio import _short_node_ok, _validator

    doc = {"apiVersion": "nvtopo.dev/v1", "kind": "Cluster", "nodes": [node]}
    if _short_node_ok(node):
        assert _validator().is_valid(doc), node


def test_a_bad_node_in_a_large_cluster_is_named_by_its_own_index() -> None:
    nodes: list[dict[str, Any]] = [{"name": f"n{i}", "system": "gb200-tray"} for i in range(200)]
    nodes[170]["clique"] = "bad"
    doc = {"apiVersion": "nvtopo.dev/v1", "kind": "Cluster", "nodes": nodes}
    with pytest.raises(ParseError, match=r"\$\.nodes\[170\]\.clique: 'bad' is not a clique id"):
        cluster_from_json(json.dumps(doc))
    nodes[170]["clique"] = f"{_UUID}.7"
    nodes[171]["freeGpus"] = [1, 1]
    with pytest.raises(ParseError, match=r"\$\.nodes\[171\]\.freeGpus: .* non-unique"):
        cluster_from_json(json.dumps(doc))
    del nodes[171]["freeGpus"]
    assert len(cluster_from_json(json.dumps(doc)).nodes) == 200
