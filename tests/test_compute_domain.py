"""ComputeDomain plans: Contract 2 inside one clique on healthy nodes, and their manifests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import nvtopo
from nvtopo import compute_domain
from nvtopo.cli import cli, main
from nvtopo.cli.compute_domain import compute_domain as compute_domain_group
from nvtopo.compute_domain import ComputeDomainError, crd_manifest
from nvtopo.exceptions import InfeasibleError
from nvtopo.model import ZERO_CLUSTER_UUID
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.place import PlacementRequest, place

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANAGED = {"app.kubernetes.io/managed-by": "nvtopo"}

if "compute-domain" not in cli.commands:  # the CLI registers it; keep the tests independent
    cli.add_command(compute_domain_group)


@pytest.fixture(scope="module")
def racks() -> Cluster:
    return nvtopo.cluster("gb200-nvl72x4")


def first_rack(cluster: Cluster) -> tuple[str, tuple[str, ...]]:
    """The clique an all-free plan picks first (lowest clique id) and its trays."""
    clique = min(cluster.cliques)
    return clique, cluster.cliques[clique]


def change(cluster: Cluster, edits: dict[str, Any]) -> Cluster:
    """``cluster`` with ``edits[name](node)`` in place of the named nodes."""
    return Cluster(tuple(edits[n.name](n) if n.name in edits else n for n in cluster.nodes))


def fabric(gpu: int, **fields: Any) -> Any:
    """An edit giving GPU ``gpu`` of a node a changed fabric record."""

    def edit(node: ClusterNode) -> ClusterNode:
        gpus = tuple(
            dataclasses.replace(g, fabric=dataclasses.replace(g.fabric, **fields))
            if g.index == gpu and g.fabric is not None
            else g
            for g in node.topology.gpus
        )
        return dataclasses.replace(node, topology=node.topology.replace_gpus(gpus))

    return edit


def links_down(gpu: int, *links: int) -> Any:
    def edit(node: ClusterNode) -> ClusterNode:
        gpus = tuple(
            dataclasses.replace(
                g,
                nvlinks=tuple(
                    dataclasses.replace(link, state="down") if link.link in links else link
                    for link in g.nvlinks
                ),
            )
            if g.index == gpu
            else g
            for g in node.topology.gpus
        )
        return dataclasses.replace(node, topology=node.topology.replace_gpus(gpus))

    return edit


def busy(*free: int) -> Any:
    return lambda node: dataclasses.replace(node, free_gpus=tuple(free))


def in_domain(node: ClusterNode) -> ClusterNode:
    return dataclasses.replace(node, in_compute_domain=True)


# -- placement ---------------------------------------------------------------------------------


def test_free_cluster_plan_is_contract_2(racks: Cluster) -> None:
    p = compute_domain.plan(racks, name="train", gpus=16, nodes=4)
    assert p.request == PlacementRequest(16, 4, "required")
    assert p.placement == place(racks, p.request)
    assert len(p.cliques) == 1
    assert {racks.node(n).domain for n in p.nodes} == {p.cliques[0]}
    assert p.excluded == ()
    assert p.gpus_per_node == 4


@pytest.fixture(scope="module")
def troubled(racks: Cluster) -> tuple[Cluster, list[str]]:
    """The first rack with busy, unhealthy, not-registered and ComputeDomain nodes."""
    _, trays = first_rack(racks)
    edits = {
        trays[0]: busy(),
        trays[1]: busy(0, 1),
        trays[2]: fabric(2, state="in_progress", cluster_uuid=ZERO_CLUSTER_UUID, clique_id=0),
        trays[3]: fabric(3, health="unhealthy"),
        trays[4]: in_domain,
        # NVML reports a failed registration as Completed with an error and no cluster.
        trays[5]: fabric(
            1, status="insufficient_resources", cluster_uuid=ZERO_CLUSTER_UUID, clique_id=0
        ),
        trays[6]: fabric(0, cluster_uuid=ZERO_CLUSTER_UUID),
    }
    return change(racks, edits), list(trays)


def test_plan_avoids_busy_unhealthy_and_compute_domain_nodes(
    troubled: tuple[Cluster, list[str]],
) -> None:
    cluster, trays = troubled
    # 11 healthy trays are left in the first rack; it is the fullest, so best fit takes it.
    p = compute_domain.plan(cluster, name="train", gpus=44, nodes=11)
    assert p.placement == place(cluster, p.request)
    assert set(p.nodes) == set(trays[7:])
    assert len(p.cliques) == 1
    assert {cluster.node(n).domain for n in p.nodes} == set(p.cliques)
    reasons = {e.name: e.reasons for e in p.excluded}
    assert reasons == {
        trays[0]: ("no free GPUs",),
        trays[1]: ("2 free GPUs, 4 needed",),
        trays[2]: ("GPU 2: fabric state In Progress",),
        trays[3]: ("GPU 3: fabric health Unhealthy",),
        trays[4]: ("already in a ComputeDomain",),
        trays[5]: ("GPU 1: fabric status Insufficient Resources",),
        trays[6]: ("GPU 0: fabric cluster UUID is all zeros",),
    }
    assert not set(p.nodes) & set(reasons)
    text = p.explain()
    assert f"{trays[2]}  GPU 2: fabric state In Progress" in text
    assert "Excluded: 7 nodes excluded" in text


def test_plan_moves_to_another_rack_when_the_first_is_too_damaged(
    troubled: tuple[Cluster, list[str]], racks: Cluster
) -> None:
    cluster, trays = troubled
    p = compute_domain.plan(cluster, name="train", gpus=48, nodes=12)
    assert p.placement == place(cluster, p.request)
    assert not set(p.nodes) & set(trays)
    (clique,) = p.cliques
    assert clique != first_rack(racks)[0]
    assert all(cluster.node(n).domain == clique for n in p.nodes)


def test_degraded_nvlinks_keep_a_node_out_of_place_and_of_the_plan(racks: Cluster) -> None:
    """The GPU with NVLinks down is tainted, so placement counts its tray 3 GPUs short."""
    clique, trays = first_rack(racks)
    cluster = change(racks, {trays[5]: links_down(0, 4, 5)})
    whole_rack = PlacementRequest(72, 18, "required")
    assert cluster.node(trays[5]).free == (1, 2, 3)
    assert trays[5] not in {n.name for n in place(cluster, whole_rack).nodes}
    assert trays[5] in {n.name for n in place(racks, whole_rack).nodes}
    p = compute_domain.plan(cluster, name="rack", gpus=72, nodes=18)
    assert trays[5] not in p.nodes
    assert p.cliques != (clique,)
    gated = change(cluster, {trays[5]: busy()})
    assert p.placement == place(gated, whole_rack)
    assert [(e.name, e.reasons) for e in p.excluded] == [(trays[5], ("GPU 0: NVLinks 4, 5 down",))]


def test_one_node_plan_skips_a_node_already_in_a_compute_domain(racks: Cluster) -> None:
    _, trays = first_rack(racks)
    cluster = change(racks, {trays[0]: in_domain})
    one = PlacementRequest(4, 1, "required")
    # Contract 2 alone may share a node with a ComputeDomain when no new one is formed ...
    assert [n.name for n in place(cluster, one).nodes] == [trays[0]]
    # ... but a plan always makes a new IMEX domain, so it goes next door.
    p = compute_domain.plan(cluster, name="one", gpus=4, nodes=1)
    assert p.nodes == (trays[1],)
    assert p.placement == place(change(cluster, {trays[0]: busy()}), one)
    assert [(e.name, e.reasons) for e in p.excluded] == [
        (trays[0], ("already in a ComputeDomain",))
    ]


def test_nodes_without_a_clique_are_listed_for_multi_node_jobs() -> None:
    rack = nvtopo.cluster("gb200-nvl72")
    h100 = ClusterNode("h100-0", nvtopo.system("dgx-h100"))
    mixed = Cluster((*rack.nodes, h100))
    p = compute_domain.plan(mixed, name="mixed", gpus=8, nodes=2)
    assert "h100-0" not in p.nodes
    no_fabric = ("GPUs 0-7: no multi-node NVLink fabric info",)
    assert [(e.name, e.reasons) for e in p.excluded] == [("h100-0", no_fabric)]
    # A ComputeDomain is an IMEX domain: a node without multi-node fabric joins none, also
    # alone (as `imex check` says), so 8 GPUs on one node fit nowhere here.
    with pytest.raises(InfeasibleError, match="no multi-node NVLink fabric info"):
        compute_domain.plan(mixed, name="single", gpus=8, nodes=1)


def test_infeasible_request_counts_the_excluded_nodes(racks: Cluster) -> None:
    cluster = change(racks, {n: in_domain for n in racks.cliques[min(racks.cliques)][:3]})
    with pytest.raises(InfeasibleError, match=r"3 nodes excluded \(3 already in a ComputeDomain\)"):
        compute_domain.plan(cluster, name="big", gpus=19 * 4, nodes=19)


def test_uneven_request_is_made_even(racks: Cluster) -> None:
    p = compute_domain.plan(racks, name="six", gpus=6)
    assert p.request == PlacementRequest(6, 2, "required")
    assert [len(n.gpus) for n in p.placement.nodes] == [3, 3]
    assert p.placement == place(racks, p.request)
    with pytest.raises(InfeasibleError, match="10 does not split evenly over 3"):
        compute_domain.plan(racks, name="ten", gpus=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Train"}, "name 'Train' must be a DNS label"),
        ({"name": "x" * 53}, "at most 52"),
        ({"namespace": "-ns"}, "namespace '-ns' must be a DNS label"),
        ({"gpu_request": "mig"}, "gpu_request must be 'dra' or 'device-plugin'"),
        ({"image": "my image"}, "is not a container image reference"),
    ],
)
def test_bad_arguments_say_what(racks: Cluster, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"name": "ok", "gpus": 8, **kwargs}
    with pytest.raises(ComputeDomainError, match=message):
        compute_domain.plan(racks, **args)


# -- manifests ---------------------------------------------------------------------------------


def _crd_schema() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_manifests_in_apply_order_with_valid_shape(racks: Cluster) -> None:
    p = compute_domain.plan(racks, name="train", namespace="ml", gpus=16, nodes=4)
    cd, template, job = p.manifests()
    assert [m["kind"] for m in (cd, template, job)] == [
        "ComputeDomain",
        "ResourceClaimTemplate",
        "Job",
    ]
    for m in (cd, template, job):
        assert m["metadata"]["namespace"] == "ml"
        assert m["metadata"]["labels"] == {**MANAGED, "nvtopo.dev/compute-domain": "train"}

    assert cd["apiVersion"] == "resource.nvidia.com/v1beta1"
    assert cd["spec"] == {
        "numNodes": 4,
        "channel": {"resourceClaimTemplate": {"name": "train-channel"}, "allocationMode": "Single"},
    }
    jsonschema.validate(cd, _crd_schema())
    assert cd["metadata"]["annotations"]["nvtopo.dev/nodes"] == ",".join(p.nodes)

    assert template == {
        **nvtopo.dra.claim_template(gpus=4, name="train-gpus", namespace="ml"),
        "metadata": template["metadata"],
    }
    assert template["metadata"]["name"] == "train-gpus"

    spec = job["spec"]
    assert job["apiVersion"] == "batch/v1"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    pod = spec["template"]["spec"]
    claims = {c["name"]: c["resourceClaimTemplateName"] for c in pod["resourceClaims"]}
    assert claims == {"imex-channel": "train-channel", "gpus": "train-gpus"}
    (container,) = pod["containers"]
    assert {c["name"] for c in container["resources"]["claims"]} == set(claims)
    assert "limits" not in container["resources"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": list(p.nodes)},
        {"key": "nvidia.com/gpu.clique", "operator": "In", "values": list(p.cliques)},
    ]
    (anti,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert anti["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert pod["restartPolicy"] == "Never"


def test_device_plugin_pods_use_gpu_limits(racks: Cluster) -> None:
    p = compute_domain.plan(
        racks,
        name="dp",
        gpus=6,
        nodes=2,
        gpu_request="device-plugin",
        image="registry.example/train:1",
    )
    assert p.claim_template() is None
    _, job = p.manifests()
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/train:1"
    assert container["resources"] == {
        "claims": [{"name": "imex-channel"}],
        "limits": {"nvidia.com/gpu": "3"},
    }
    assert pod["resourceClaims"] == [
        {"name": "imex-channel", "resourceClaimTemplateName": "dp-channel"}
    ]


def test_manifests_are_fresh_each_time(racks: Cluster) -> None:
    p = compute_domain.plan(racks, name="train", gpus=8)
    first = p.manifests()
    first[0]["spec"]["numNodes"] = 99
    assert p.manifests()[0]["spec"]["numNodes"] == 2
    doc = json.loads(json.dumps(p.to_json()))
    assert doc["placement"] == p.placement.to_json()
    assert doc["request"] == {"gpus": 8, "nodes": None, "domain": "required"}


def test_crd_file_is_the_manifest_and_follows_the_driver_schema() -> None:
    on_disk = yaml.safe_load((DEPLOY / "computedomain-crd.yaml").read_text())
    crd = crd_manifest()
    assert on_disk == crd
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    props = version["schema"]["openAPIV3Schema"]["properties"]
    assert props["spec"]["properties"]["channel"]["properties"]["allocationMode"]["enum"] == [
        "All",
        "Single",
    ]
    status = props["status"]["properties"]
    assert status["status"]["enum"] == ["Ready", "NotReady"]
    nodes = status["nodes"]
    assert nodes["x-kubernetes-list-map-keys"] == ["name"]
    assert set(nodes["items"]["properties"]) == {"name", "ipAddress", "cliqueID", "index", "status"}
    good = {
        "status": "Ready",
        "nodes": [
            {"name": "a", "ipAddress": "10.0.0.1", "cliqueID": "u.1", "index": 0, "status": "Ready"}
        ],
    }
    jsonschema.validate(good, props["status"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"status": "Done"}, props["status"])


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_plan_yaml_is_the_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compute-domain",
        "plan",
        "--source",
        "system:gb200-nvl72x4",
        "--name",
        "train",
        "--gpus",
        "16",
        "--nodes",
        "4",
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    expected = compute_domain.plan(nvtopo.cluster("gb200-nvl72x4"), name="train", gpus=16, nodes=4)
    assert docs == expected.manifests()
    assert err.startswith("ComputeDomain default/train: 4 nodes in clique ")


def test_cli_plan_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "compute-domain",
        "plan",
        "-s",
        "system:gb200-nvl72x2",
        "--name",
        "t",
        "-k",
        "8",
        "--gpu-request",
        "device-plugin",
    ]
    assert main([*base, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["kind"] for m in doc["manifests"]] == ["ComputeDomain", "Job"]
    assert [n["name"] for n in doc["placement"]["nodes"]] == ["rack0000-tray00", "rack0000-tray01"]
    assert main([*base, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "rack0000-tray00  GPUs 0, 1, 2, 3" in out


def test_cli_plan_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compute-domain", "plan", "-s", "system:gb200-nvl72x2", "--name", "Bad_Name", "-k", "4"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("nvtopo: error: name 'Bad_Name' must be a DNS label")
    assert (
        main(["compute-domain", "plan", "-s", "system:gb200-nvl72x2", "--name", "x", "-k", "80"])
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("nvtopo: error: ") and err.rstrip().endswith("no node excluded")


def test_cli_apply_without_kubeconfig_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = [
        "compute-domain",
        "apply",
        "-s",
        "system:gb200-nvl72x2",
        "--name",
        "x",
        "-k",
        "4",
        "--kubeconfig",
        str(tmp_path / "missing"),
    ]
    assert main(argv) == 1
    # Only the error: the plan's summary waits until the apiserver has answered.
    err = capsys.readouterr().err.splitlines()
    assert err == [f"nvtopo: error: kubeconfig {tmp_path / 'missing'}: no such file"]


@pytest.mark.parametrize("text", ["root:x:0:0:root:/root:/bin/bash\n", "[1, 2]\n", "\x00\xff["])
def test_cli_a_file_that_is_no_kubeconfig_is_one_line(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    argv = ["compute-domain", "apply", "-s", "system:gb200-nvl72x2", "--name", "x", "-k", "4",
            "--kubeconfig", str(path)]  # fmt: skip
    assert main(argv) == 1
    assert capsys.readouterr().err == f"nvtopo: error: kubeconfig {path}: not a kubeconfig file\n"
    assert main(["compute-domain", "delete", "x", "--kubeconfig", str(path)]) == 1
    assert capsys.readouterr().err == f"nvtopo: error: kubeconfig {path}: not a kubeconfig file\n"


def test_an_apiserver_that_never_answers_fails_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    from kubernetes import client

    from nvtopo.compute_domain.apply import require_served
    from nvtopo.kube import client as kube_client

    monkeypatch.setattr(kube_client, "REQUEST_TIMEOUT", (0.2, 0.2))
    with socket.socket() as hole:  # accepts connections, never says a word
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        cfg = client.Configuration()
        cfg.host = f"https://127.0.0.1:{hole.getsockname()[1]}"
        cfg.retries = 0
        api = client.ApiClient(cfg)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                require_served(api, "default")
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(60)  # a guard against hanging the suite, not a speed check
        api.close()
    assert not worker.is_alive(), "the request hung on a silent apiserver"
    [error] = outcome
    assert isinstance(error, ComputeDomainError)
    assert f"cannot reach the apiserver at {cfg.host} (" in str(error)
    assert "\n" not in str(error)
