"""``nvtopo export``: every target, from the one layout, deterministic, by the published rules.

The field names and types checked here are written from each project's published API (the
sources are cited in ``nvtopo/export/<target>.py``); the checks share no code with the
exporters. Kueue's and Volcano's objects are also decoded by their own Go types
(tests/test_export_go.py)
and all Kubernetes objects go through a real apiserver (tests/k8s/test_export_apiserver.py).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import replace
from typing import Any

import pytest
import yaml

import nvtopo
from nvtopo.cli import main
from nvtopo.export import TARGETS, export, layout, node_labels, slurm_topology_yaml
from nvtopo.model import ZERO_CLUSTER_UUID, NodeTopology, Platform

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
RACKS = nvtopo.cluster("gb200-nvl72x4")


def with_fabric(topo: NodeTopology, **changes: Any) -> NodeTopology:
    gpus = []
    for g in topo.gpus:
        assert g.fabric is not None
        gpus.append(replace(g, fabric=replace(g.fabric, **changes)))
    return topo.replace_gpus(gpus)


def with_chassis(topo: NodeTopology, serial: str) -> NodeTopology:
    return topo.replace_gpus(
        replace(g, platform=Platform(chassis_serial=serial)) for g in topo.gpus
    )


# ---- one layout -------------------------------------------------------------------------


def test_nvl72_racks_hold_their_cliques() -> None:
    lay = layout(RACKS)
    assert lay.rack == "above"
    assert lay.levels == (
        "topology.nvtopo.dev/rack",
        "topology.nvtopo.dev/clique",
        "kubernetes.io/hostname",
    )
    assert [len(v) for v in lay.cliques.values()] == [18] * 4
    assert set(lay.cliques) == set(RACKS.cliques)


def test_same_cluster_same_output_whatever_the_node_order() -> None:
    shuffled = list(RACKS.nodes)
    random.Random(7).shuffle(shuffled)
    other = nvtopo.Cluster(tuple(shuffled))
    for target in TARGETS:
        assert export(RACKS, target) == export(other, target), target
    assert slurm_topology_yaml(RACKS) == slurm_topology_yaml(other)


def test_a_clique_over_two_racks_puts_the_rack_below_it() -> None:
    tray = nvtopo.system("gb200-tray")
    nodes = [
        nvtopo.ClusterNode(f"n{i}", with_chassis(tray, "A" if i < 2 else "B"), tray.clique)
        for i in range(4)
    ]
    lay = layout(nvtopo.Cluster(tuple(nodes)))
    assert lay.rack == "below"
    assert lay.levels[:2] == ("topology.nvtopo.dev/clique", "topology.nvtopo.dev/rack")
    labels = node_labels(lay)["n3"]
    assert labels["accelerator.topograph.run/sub-domain"].endswith(".B")


def test_racks_and_cliques_that_do_not_nest_give_no_rack_level() -> None:
    tray = nvtopo.system("gb200-tray")
    other = with_fabric(tray, clique_id=9)
    nodes = [
        nvtopo.ClusterNode("a0", with_chassis(tray, "A"), tray.clique),
        nvtopo.ClusterNode("a1", with_chassis(other, "A"), other.clique),
        nvtopo.ClusterNode("b0", with_chassis(tray, "B"), tray.clique),
    ]
    lay = layout(nvtopo.Cluster(tuple(nodes)))
    assert lay.rack == "none"
    assert "topology.nvtopo.dev/rack" not in lay.levels
    assert all("topology.nvtopo.dev/rack" not in v for v in node_labels(lay).values())


@pytest.mark.parametrize(
    "change",
    [{"health": "unhealthy"}, {"state": "in_progress"}, {"cluster_uuid": ZERO_CLUSTER_UUID}],
)
def test_a_node_the_health_rule_drops_loses_its_clique_everywhere(change: dict[str, Any]) -> None:
    bad = RACKS.nodes[3]
    nodes = list(RACKS.nodes)
    nodes[3] = replace(bad, topology=with_fabric(bad.topology, **change))
    cluster = nvtopo.Cluster(tuple(nodes))
    labels = node_labels(cluster)[bad.name]
    assert set(labels) == {"topology.nvtopo.dev/rack"}
    assert all(bad.name not in v for v in layout(cluster).cliques.values())
    text = slurm_topology_yaml(cluster)
    assert f"# in no NVLink domain, so in no block: {bad.name}" in text
    hn = export(cluster, "volcano")
    assert all(bad.name not in json.dumps(h) for h in hn)


# ---- labels ------------------------------------------------------------------------------


def test_labels_are_valid_and_name_the_clique() -> None:
    objects = export(RACKS, "labels")
    assert len(objects) == len(RACKS.nodes)
    for obj in objects:
        assert (obj["apiVersion"], obj["kind"]) == ("v1", "Node")
        node = RACKS.node(obj["metadata"]["name"])
        labels = obj["metadata"]["labels"]
        for key, value in labels.items():
            assert LABEL_KEY.match(key) and len(key.partition("/")[2]) <= 63, key
            assert LABEL_VALUE.match(value) and len(value) <= 63, value
        assert labels["topology.nvtopo.dev/clique"] == node.domain
        assert labels["nvidia.com/gpu.clique"] == node.domain
        assert labels["accelerator.topograph.run/domain"] == node.domain


# ---- Kueue and KAI: Topology --------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "api_version"),
    [("kueue", "kueue.x-k8s.io/v1beta2"), ("kai", "kai.scheduler/v1alpha1")],
)
def test_topology_objects_follow_the_published_api(target: str, api_version: str) -> None:
    # Kueue apis/kueue/v1beta2/topology_types.go; KAI pkg/apis/kai/v1alpha1/topology_types.go:
    # spec.levels, 1..16 items of {nodeLabel: string} (a label key, <= 316 characters),
    # unique, kubernetes.io/hostname only last. Nothing else in spec.
    (obj,) = export(RACKS, target)
    assert obj["apiVersion"] == api_version and obj["kind"] == "Topology"
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["spec"]) == {"levels"}
    levels = [lvl["nodeLabel"] for lvl in obj["spec"]["levels"]]
    assert all(set(lvl) == {"nodeLabel"} for lvl in obj["spec"]["levels"])
    assert 1 <= len(levels) <= 16 and len(set(levels)) == len(levels)
    assert all(LABEL_KEY.match(k) and len(k) <= 316 for k in levels)
    assert levels[-1] == "kubernetes.io/hostname"
    assert DNS_SUBDOMAIN.match(obj["metadata"]["name"])


# ---- Volcano: HyperNodes -----------------------------------------------------------------


def check_hypernodes(objects: list[dict[str, Any]], nodes: set[str]) -> None:
    """volcano-sh/apis pkg/apis/topology/v1alpha1/hypernode_types.go, written out."""
    names = [o["metadata"]["name"] for o in objects]
    assert len(set(names)) == len(names)
    for o in objects:
        assert (o["apiVersion"], o["kind"]) == ("topology.volcano.sh/v1alpha1", "HyperNode")
        assert DNS_SUBDOMAIN.match(o["metadata"]["name"]) and len(o["metadata"]["name"]) <= 253
        spec = o["spec"]
        assert set(spec) <= {"tier", "tierName", "members"}
        assert isinstance(spec["tier"], int) and not isinstance(spec["tier"], bool)
        assert spec["tier"] >= 0 and len(spec["tierName"]) <= 253
        assert len(spec["members"]) >= 1
        for m in spec["members"]:
            assert set(m) == {"type", "selector"} and m["type"] in ("Node", "HyperNode")
            assert len(m["selector"]) == 1 and set(m["selector"]) <= {
                "exactMatch",
                "regexMatch",
                "labelMatch",
            }
            name = m["selector"]["exactMatch"]["name"]
            assert DNS_SUBDOMAIN.match(name) and 1 <= len(name) <= 253
            assert name in (nodes if m["type"] == "Node" else set(names)), name


def test_volcano_tier_one_is_one_hypernode_per_clique() -> None:
    objects = export(RACKS, "volcano")
    check_hypernodes(objects, {n.name for n in RACKS.nodes})
    tier1 = [o for o in objects if o["spec"]["tier"] == 1]
    members = [
        sorted(m["selector"]["exactMatch"]["name"] for m in o["spec"]["members"]) for o in tier1
    ]
    assert sorted(map(tuple, members)) == sorted(RACKS.cliques.values())
    tier2 = [o for o in objects if o["spec"]["tier"] == 2]
    assert len(tier2) == 4 and all(len(o["spec"]["members"]) == 1 for o in tier2)


# ---- Slurm: topology.yaml, block rules ----------------------------------------------------


def expand_hostlist(text: str) -> list[str]:
    """Slurm's hostlist notation expanded (prefix[a-b,c],name,...), written for the test."""
    out: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", text):
        m = re.fullmatch(r"(.*)\[(.*)\]", part)
        if m is None:
            out.append(part)
            continue
        for rng in m.group(2).split(","):
            lo, _, hi = rng.partition("-")
            hi = hi or lo
            out.extend(f"{m.group(1)}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
    return out


def check_block_topology(text: str, cluster: nvtopo.Cluster) -> None:
    """topology.yaml(5), topology/block: names unique, each node in one block, sizes."""
    doc = yaml.safe_load(text)
    assert isinstance(doc, list) and len(doc) == 1
    topo = doc[0]
    assert next(iter(topo)) == "topology" and topo["cluster_default"] is True
    assert set(topo) == {"topology", "cluster_default", "block"}
    block = topo["block"]
    names = [b["block"] for b in block["blocks"]]
    assert len(set(names)) == len(names) and all(names)
    seen: dict[str, str] = {}
    for b in block["blocks"]:
        for node in expand_hostlist(b["nodes"]):
            assert node not in seen, f"{node} in {seen.get(node)} and {b['block']}"
            seen[node] = b["block"]
    in_clique = {n.name for n in cluster.nodes if n.domain is not None}
    assert set(seen) == in_clique
    # one block per clique, exactly its nodes
    groups = sorted(tuple(sorted(n for n, b in seen.items() if b == name)) for name in names)
    assert groups == sorted(cluster.cliques.values())
    sizes = block["block_sizes"]
    smallest = min(len(g) for g in groups)
    assert 1 <= sizes[0] <= smallest
    for lo, hi in itertools.pairwise(sizes):
        ratio = hi // lo
        assert hi % lo == 0 and ratio > 1 and ratio & (ratio - 1) == 0


@pytest.mark.parametrize("name", ["gb200-nvl72", "gb300-nvl72", "gb200-nvl72x4", "gb300-nvl72x16"])
def test_slurm_blocks_of_catalog_clusters(name: str) -> None:
    cluster = nvtopo.cluster(name)
    check_block_topology(slurm_topology_yaml(cluster), cluster)


def test_slurm_blocks_with_a_short_rack_and_a_lonely_node() -> None:
    nodes = [n for n in RACKS.nodes if n.name != "rack0002-tray05"]
    nodes.append(nvtopo.ClusterNode("dgx-0", nvtopo.system("dgx-h100")))
    cluster = nvtopo.Cluster(tuple(nodes))
    text = slurm_topology_yaml(cluster)
    check_block_topology(text, cluster)
    assert yaml.safe_load(text)[0]["block"]["block_sizes"] == [17]
    assert "rack0002-tray[00-04,06-17]" in text and "no block: dgx-0" in text


def test_hostlist_round_trips() -> None:
    from nvtopo.export.slurm import hostlist

    rng = random.Random(3)
    for _ in range(200):
        names = {f"{rng.choice(['a', 'rack1-t', 'n'])}{rng.randrange(30):0{rng.choice([1, 2])}d}"
                 for _ in range(rng.randrange(1, 20))}  # fmt: skip
        names |= {"login"}
        assert sorted(expand_hostlist(hostlist(names))) == sorted(names)


# ---- Topograph -----------------------------------------------------------------------------


def test_topograph_model_has_one_block_per_clique() -> None:
    # NVIDIA/topograph pkg/models/model.go: switches[], capacity_blocks[] of
    # {name, type, nvlink, nodes}; a node in two blocks is refused ("duplicated node name").
    model = export(RACKS, "topograph")
    assert set(model) == {"switches", "capacity_blocks"}
    blocks = model["capacity_blocks"]
    nodes = [n for b in blocks for n in b["nodes"]]
    assert len(nodes) == len(set(nodes)) == 72
    assert {b["nvlink"] for b in blocks} == set(RACKS.cliques)
    assert all(set(b) == {"name", "type", "nvlink", "nodes"} for b in blocks)
    assert {b["type"] for b in blocks} == {"NVIDIA GB200"}


# ---- CLI --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_cli_prints_every_target(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", target, "--source", "system:gb200-nvl72x4"]) == 0
    out = capsys.readouterr().out
    docs = list(yaml.safe_load_all(out))
    assert docs and all(d is not None for d in docs)
    if target not in ("slurm", "topograph"):
        assert main(["export", "--to", target, "-s", "system:gb200-nvl72x4", "-o", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["kind"] == "List" and listed["items"] == docs


def test_cli_slurm_without_any_clique_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "slurm", "--source", "system:dgx-h100"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no node is in an NVLink domain" in err


@pytest.mark.parametrize(
    "module", ["", ".levels", ".labels", ".kueue", ".kai", ".volcano", ".slurm", ".topograph"]
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"nvtopo.export{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
