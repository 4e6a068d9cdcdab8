"""One clique rule for every caller (DESIGN, Contract 2), and one ComputeDomain per clique.

A node whose GPUs disagree on the clique, or whose declared clique its GPUs contradict, is in
no clique for ``place``, ``ClusterState``, ComputeDomain plans, IMEX configs, slices and the
catalog alike, and each says so per node with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import nvtopo
from nvtopo.cli import main
from nvtopo.compute_domain import plan
from nvtopo.dra.slices import cluster_resource_slices
from nvtopo.exceptions import InfeasibleError
from nvtopo.formats.jsonio import cluster_to_json, dumps
from nvtopo.imex import place_domain
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode

CLIQUE_ATTRIBUTE = "topology.nvtopo.dev/clique"


def split_tray() -> NodeTopology:
    """A GB200 tray whose GPUs 2 and 3 report another clique id than GPUs 0 and 1."""
    tray = nvtopo.system("gb200-tray")
    gpus = tuple(
        dataclasses.replace(g, fabric=dataclasses.replace(g.fabric, clique_id=9))
        if g.index >= 2 and g.fabric is not None
        else g
        for g in tray.gpus
    )
    return tray.replace_gpus(gpus)


def split_cluster() -> Cluster:
    topo = split_tray()
    declared = nvtopo.system("gb200-tray").clique
    return Cluster(tuple(ClusterNode(n, topo, declared) for n in ("a", "b")))


def write(tmp_path: Path, cluster: Cluster) -> str:
    path = tmp_path / "cluster.json"
    path.write_text(dumps(cluster_to_json(cluster)))
    return f"file:{path}"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_model_names_the_disagreement_per_node() -> None:
    cluster = split_cluster()
    own = nvtopo.system("gb200-tray").gpus[0].fabric
    assert own is not None
    first = f"{own.cluster_uuid}.{own.clique_id}"
    want = f"GPU 0 says clique {first}, GPU 2 says clique {own.cluster_uuid}.9"
    assert cluster.clique_problems == {"a": want, "b": want}
    assert cluster.cliques == {}


def test_place_forms_no_compute_domain_on_trays_whose_gpus_disagree(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path, split_cluster())
    args = ("place", "--source", source, "--gpus", "8", "--nodes", "2")
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["computeDomain"] is False and doc["computeDomains"] == []
    assert doc["cliques"] == []
    assert all("GPU 2 says clique" in n["cliqueProblem"] for n in doc["nodes"])
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "forms a ComputeDomain" not in out
    assert "node a is in no clique: GPU 0 says clique" in out
    assert "required" not in err
    code, out, err = run(capsys, *args, "--domain", "required")
    assert code != 0 and "no clique has 2 nodes" in err


def test_cluster_state_reports_each_placed_nodes_clique_and_problem() -> None:
    good = nvtopo.cluster("gb200-nvl72x2")
    bad = split_cluster()
    state = nvtopo.ClusterState(Cluster(good.nodes + bad.nodes))
    placed = state.place(gpus=8, nodes=2, domain="required")
    assert all(n.clique is not None and n.clique_problem is None for n in placed.nodes)
    assert placed.one_compute_domain
    lone = nvtopo.place(bad, gpus=8, nodes=2)
    assert [n.clique for n in lone.nodes] == [None, None]
    assert "Node a is in no clique: GPU 0 says clique" in lone.explain()
    assert "forms a ComputeDomain" not in lone.explain()


@pytest.mark.parametrize("command", ["compute-domain plan --name job", "imex config"])
def test_plan_and_imex_config_refuse_trays_whose_gpus_disagree(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    source = write(tmp_path, split_cluster())
    code, out, err = run(
        capsys, *command.split(), "--source", source, "--gpus", "8", "--nodes", "2"
    )
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "GPU 2 says clique" in err and "Traceback" not in err
    assert "a: GPUs disagree on the clique (GPU 0 says clique" in err and "; b: GPUs" in err


def test_plan_lists_the_disagreeing_node_with_its_reason() -> None:
    good = nvtopo.cluster("gb200-nvl72x2")
    bad = ClusterNode("z-split", split_tray(), None)
    p = plan(Cluster((*good.nodes, bad)), name="job", gpus=8, nodes=2)
    excluded = {e.name: e.reasons for e in p.excluded}
    assert any("GPU 2 says clique" in r for r in excluded["z-split"])
    assert "z-split" in p.explain() and "GPU 2 says clique" in p.explain()


def test_slices_publish_no_clique_for_trays_whose_gpus_disagree() -> None:
    slices = cluster_resource_slices(split_cluster())
    for s in slices:
        for device in s["spec"]["devices"]:
            assert CLIQUE_ATTRIBUTE not in device["attributes"]
    good = cluster_resource_slices(nvtopo.cluster("gb200-nvl72x2"))
    assert CLIQUE_ATTRIBUTE in good[0]["spec"]["devices"][0]["attributes"]


def test_catalog_nodes_declare_what_their_gpus_say() -> None:
    for name in ("gb200-nvl72x2", "gb300-nvl72"):
        cluster = nvtopo.cluster(name)
        assert cluster.clique_problems == {}
        assert all(n.domain == n.clique and n.clique is not None for n in cluster.nodes)


# -- one ComputeDomain per clique ------------------------------------------------------------


def test_a_preferred_placement_over_two_cliques_lists_one_compute_domain_each() -> None:
    cluster = nvtopo.cluster("gb200-nvl72x2")
    p = nvtopo.place(cluster, gpus=80, nodes=20, domain="preferred")
    assert len(p.cliques) == 2
    groups = p.compute_domains
    assert [g.clique for g in groups] == list(p.cliques)
    assert sorted(len(g.nodes) for g in groups) == [2, 18]
    for g in groups:
        assert set(cluster.cliques[g.clique]) >= set(g.nodes)
    doc = p.to_json()
    assert doc["computeDomain"] is False
    assert [d["clique"] for d in doc["computeDomains"]] == list(p.cliques)
    assert "forms 2 ComputeDomains, one per clique" in p.explain()
    one = nvtopo.place(cluster, gpus=16, nodes=4, domain="required")
    assert one.to_json()["computeDomain"] is True and len(one.compute_domains) == 1


def test_plan_emits_one_compute_domain_per_clique() -> None:
    cluster = nvtopo.cluster("gb200-nvl72x2")
    p = plan(cluster, name="train", gpus=80, nodes=20, domain="preferred")
    docs = p.manifests()
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ComputeDomain", "ResourceClaimTemplate", "Job"] * 2
    domains = [d for d in docs if d["kind"] == "ComputeDomain"]
    assert [d["metadata"]["name"] for d in domains] == ["train-0", "train-1"]
    assert sorted(d["spec"]["numNodes"] for d in domains) == [2, 18]
    for d in docs:
        assert d["metadata"]["labels"]["nvtopo.dev/compute-domain"] == "train"
    for job, part in zip([d for d in docs if d["kind"] == "Job"], p.parts, strict=True):
        terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        expressions = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        values = {e["key"]: e["values"] for e in expressions[0]["matchExpressions"]}
        assert values["nvidia.com/gpu.clique"] == list(part.cliques) and len(part.cliques) == 1
        assert values["kubernetes.io/hostname"] == list(part.nodes)
    assert "one ComputeDomain per clique" in p.explain()
    single = plan(cluster, name="train", gpus=16, nodes=4)
    assert [d["metadata"]["name"] for d in single.manifests()] == [
        "train",
        "train-gpus",
        "train",
    ]


# -- no multi-node fabric ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["compute-domain plan --name job", "imex config"])
def test_plan_and_imex_config_refuse_a_node_without_multi_node_fabric(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = run(capsys, *command.split(), "--source", "system:dgx-h100", "--gpus", "8")
    assert code != 0 and out == ""
    assert "cannot join a multi-node NVLink job" in err
    assert "GPUs 0-7: no multi-node NVLink fabric info" in err
    assert err.count("\n") == 1


def test_place_domain_refuses_a_node_without_multi_node_fabric() -> None:
    one = Cluster((ClusterNode("h100", nvtopo.system("dgx-h100")),))
    with pytest.raises(InfeasibleError, match="no multi-node NVLink fabric info"):
        place_domain(one, gpus=4)
