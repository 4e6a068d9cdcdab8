"""The node agent's labels on a real apiserver: applied, never over another owner's, removed.

Ownership is what the apiserver records in each Node's ``managedFields``: a label written
by another field manager (GPU Feature Discovery's ``nvidia.com/gpu.clique``, Topograph's
``accelerator.topograph.run/domain``) is left as it is, and a label nvtopo set goes when
the node leaves its clique or its fabric turns unhealthy.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo.cli import main
from nvtopo.dra.labels_apply import FIELD_MANAGER, apply_cluster_labels, label_owners
from nvtopo.kube.client import RawApi
from nvtopo.kube.retry import KubeApiError

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
NODES = "/api/v1/nodes"
TRAY = nvtopo.system("gb200-tray")
CLIQUE = TRAY.clique
RACK_KEY = "topology.nvtopo.dev/rack"
OWN_KEY = "topology.nvtopo.dev/clique"
GFD_KEY = "nvidia.com/gpu.clique"
TOPOGRAPH_KEY = "accelerator.topograph.run/domain"


@pytest.fixture
def names(k8s_client: ApiClient) -> Iterator[list[str]]:
    raw = RawApi(k8s_client)
    made = [f"lbl-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    for n in made:
        raw.request("POST", NODES, what="node",
                    body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})  # fmt: skip
    yield made
    for n in made:
        raw.request("DELETE", RawApi.item(NODES, n), what="cleanup")


def cluster(names: list[str], unhealthy: tuple[str, ...] = ()) -> nvtopo.Cluster:
    sick = TRAY.replace_gpus(
        replace(g, fabric=replace(g.fabric, health="unhealthy")) for g in TRAY.gpus if g.fabric
    )
    return nvtopo.Cluster(
        tuple(nvtopo.ClusterNode(n, sick if n in unhealthy else TRAY, CLIQUE) for n in names)
    )


def labels(client: ApiClient, node: str) -> dict[str, str]:
    got = RawApi(client).request("GET", RawApi.item(NODES, node), what="get")
    return dict(got["metadata"].get("labels") or {})


def node(client: ApiClient, name: str) -> dict[str, Any]:
    return RawApi(client).request("GET", RawApi.item(NODES, name), what="get")


def other_writes(client: ApiClient, name: str, key: str, value: str, manager: str) -> None:
    """Another component labels the node with an ordinary update (merge patch)."""
    kube.CoreV1Api(client).patch_node(
        name, {"metadata": {"labels": {key: value}}}, field_manager=manager
    )


def test_labels_are_applied_under_nvtopos_field_manager(
    k8s_client: ApiClient, names: list[str]
) -> None:
    results = apply_cluster_labels(k8s_client, cluster(names))
    assert [r.node for r in results] == sorted(names)
    for n in names:
        got = labels(k8s_client, n)
        assert got[OWN_KEY] == got[GFD_KEY] == got[TOPOGRAPH_KEY] == CLIQUE
        assert got[RACK_KEY] == TRAY.gpus[0].platform.chassis_serial  # type: ignore[union-attr]
        owners = label_owners(node(k8s_client, n))
        assert all(
            owners[k] == {FIELD_MANAGER} for k in (OWN_KEY, GFD_KEY, TOPOGRAPH_KEY, RACK_KEY)
        )
    again = apply_cluster_labels(k8s_client, cluster(names))
    assert all(r.released == () and not r.skipped for r in again)


def test_a_label_another_component_owns_is_left_alone(
    k8s_client: ApiClient, names: list[str]
) -> None:
    a, b, _ = names

    # GPU Feature Discovery got there first on node a, Topograph on node b.
    other_writes(k8s_client, a, GFD_KEY, "gfd-view.1", "gpu-feature-discovery")
    other_writes(k8s_client, b, TOPOGRAPH_KEY, "nvl1", "topograph")
    results = {r.node: r for r in apply_cluster_labels(k8s_client, cluster(names))}
    assert labels(k8s_client, a)[GFD_KEY] == "gfd-view.1"
    # This apiserver records no managedFields for updates of an object nobody has applied
    # yet: a label with no owner on record counts as another component's ("?").
    assert set(results[a].skipped) == {GFD_KEY}
    assert results[b].skipped == {TOPOGRAPH_KEY: ("?",)}
    assert labels(k8s_client, b)[TOPOGRAPH_KEY] == "nvl1"
    assert labels(k8s_client, a)[OWN_KEY] == labels(k8s_client, b)[OWN_KEY] == CLIQUE
    assert labels(k8s_client, b)[GFD_KEY] == CLIQUE  # nobody else held that one on b
    # Later, another component takes over a key nvtopo had set: nvtopo lets it go.
    c = names[2]
    other_writes(k8s_client, c, GFD_KEY, "taken.2", "gpu-feature-discovery")
    results = {r.node: r for r in apply_cluster_labels(k8s_client, cluster(names))}
    assert labels(k8s_client, c)[GFD_KEY] == "taken.2"
    # Once applied, the Node's updates are on record: the key is now the updater's alone.
    assert results[c].skipped == {GFD_KEY: ("gpu-feature-discovery:Update",)}
    assert label_owners(node(k8s_client, c))[GFD_KEY] == {"gpu-feature-discovery:Update"}


def test_clique_labels_go_when_the_fabric_turns_unhealthy(
    k8s_client: ApiClient, names: list[str]
) -> None:
    a, b, c = names
    other_writes(k8s_client, a, GFD_KEY, "gfd-view.1", "gpu-feature-discovery")
    apply_cluster_labels(k8s_client, cluster(names))
    results = {r.node: r for r in apply_cluster_labels(k8s_client, cluster(names, (a, c)))}
    for n in (a, c):
        got = labels(k8s_client, n)
        assert OWN_KEY not in got and TOPOGRAPH_KEY not in got
        assert got[RACK_KEY]  # the rack stays: the node is still in it
    assert labels(k8s_client, a)[GFD_KEY] == "gfd-view.1"  # never nvtopo's: untouched
    assert GFD_KEY not in labels(k8s_client, c)  # nvtopo's: removed
    assert results[c].released == (TOPOGRAPH_KEY, GFD_KEY, OWN_KEY)  # sorted
    assert labels(k8s_client, b)[OWN_KEY] == CLIQUE


def test_dry_run_changes_nothing(k8s_client: ApiClient, names: list[str]) -> None:
    before = labels(k8s_client, names[0])
    (result,) = apply_cluster_labels(k8s_client, cluster(names), node=names[0], dry_run=True)
    assert result.dry_run and result.applied[OWN_KEY] == CLIQUE
    assert labels(k8s_client, names[0]) == before


def _install_rbac(raw: RawApi) -> None:
    """deploy/rbac.yaml as it is in the tree (its ClusterRole replaced if one is there)."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    paths = {"Namespace": "/api/v1/namespaces",
             "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
             "ClusterRole": f"{rbac}/clusterroles",
             "ClusterRoleBinding": f"{rbac}/clusterrolebindings"}  # fmt: skip
    for doc in _manifests("rbac.yaml"):
        path = paths[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
        try:
            raw.request("POST", path, what="rbac", body=doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            if doc["kind"] == "ClusterRole":
                raw.request("PUT", RawApi.item(path, doc["metadata"]["name"]), what="rbac",
                            body=doc)  # fmt: skip


def _manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]


def test_the_agent_labels_its_node_with_the_publisher_rbac(
    k8s_client: ApiClient,
    apiserver: Any,
    names: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = RawApi(k8s_client)
    _install_rbac(raw)
    token = raw.request(
        "POST", "/api/v1/namespaces/nvtopo/serviceaccounts/nvtopo-publisher/token", what="token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600}},
    )["status"]["token"]  # fmt: skip
    kubeconfig = tmp_path / "agent"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": apiserver.url,
                                               "certificate-authority": str(apiserver.ca_file)}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    driver = f"lb{uuid.uuid4().hex[:6]}.nvtopo.dev"
    agent_node = names[0]
    code = main(["publish", "--source", "system:gb200-tray", "--node", agent_node, "--driver",
                 driver, "--kubeconfig", str(kubeconfig), "--once", "--labels",
                 "--format", "json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["created"] == 1
    assert err == f"labels: node {agent_node}: 4 labels\n"
    assert labels(k8s_client, agent_node)[OWN_KEY] == CLIQUE
    # The role allows patching Nodes and nothing new besides.
    agent = RawApi(kube.ApiClient(_config(apiserver, token)))
    with pytest.raises(ApiException) as denied:
        agent.request("PATCH", RawApi.item("/api/v1/namespaces", "default"), what="probe", body={})
    assert denied.value.status == 403
    for s in raw.list("/apis/resource.k8s.io/v1/resourceslices", what="cleanup",
                      field_selector=f"spec.driver={driver}"):  # fmt: skip
        raw.request("DELETE", RawApi.item("/apis/resource.k8s.io/v1/resourceslices",
                                          s["metadata"]["name"]), what="cleanup")  # fmt: skip


def _config(apiserver: Any, token: str) -> kube.Configuration:
    config = kube.Configuration()
    config.host = apiserver.url
    config.ssl_ca_cert = str(apiserver.ca_file)
    config.api_key = {"authorization": f"Bearer {token}"}
    return config


def _pod_token(raw: RawApi, node_name: str) -> tuple[str, dict[str, Any]]:
    """A publisher Pod on ``node_name`` and a token of the agent's account bound to it."""
    pod = raw.request(
        "POST", "/api/v1/namespaces/nvtopo/pods", what="pod",
        body={"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": f"agent-{uuid.uuid4().hex[:6]}", "namespace": "nvtopo"},
              "spec": {"nodeName": node_name, "serviceAccountName": "nvtopo-publisher",
                       "containers": [{"name": "agent", "image": "nvtopo"}]}},
    )  # fmt: skip
    meta = pod["metadata"]
    answer = raw.request(
        "POST", "/api/v1/namespaces/nvtopo/serviceaccounts/nvtopo-publisher/token", what="token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600, "boundObjectRef": {
                  "apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}},
    )  # fmt: skip
    return str(answer["status"]["token"]), pod


def test_the_labels_policy_keeps_the_agent_to_its_node_and_its_keys(
    k8s_client: ApiClient, apiserver: Any, names: list[str]
) -> None:
    import time

    raw = RawApi(k8s_client)
    _install_rbac(raw)
    own, other, _ = names
    token, pod = _pod_token(raw, own)
    policy = _manifests("labels-policy.yaml")
    vap = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolic"
    paths = {"ValidatingAdmissionPolicy": f"{vap}ies",
             "ValidatingAdmissionPolicyBinding": f"{vap}ybindings"}  # fmt: skip
    with kube.ApiClient(_config(apiserver, token)) as agent:
        try:
            for doc in policy:
                raw.request("POST", paths[doc["kind"]], what="policy", body=doc)
            deadline = time.monotonic() + 30
            while True:  # the policy takes effect within a second or two of its creation
                try:
                    apply_cluster_labels(agent, cluster(names), node=other)
                except KubeApiError as exc:
                    assert exc.status == 403 and "may not update Node" in str(exc)
                    break
                assert time.monotonic() < deadline, "the policy never took effect"
                time.sleep(0.5)
            # Its own node: the managed keys go on.
            (result,) = apply_cluster_labels(agent, cluster(names), node=own)
            assert labels(k8s_client, own)[OWN_KEY] == CLIQUE and len(result.applied) == 4
            # Nothing else: a cordon, or a label of another key, is refused.
            for body in ({"spec": {"unschedulable": True}},
                         {"metadata": {"labels": {"team": "x"}}}):  # fmt: skip
                with pytest.raises(ApiException) as refused:
                    kube.CoreV1Api(agent).patch_node(own, body)
                assert refused.value.status == 403
            assert "team" not in labels(k8s_client, own)
        finally:
            for doc in reversed(policy):
                path = paths[doc["kind"]]
                raw.request("DELETE", RawApi.item(path, doc["metadata"]["name"]), what="cleanup")
            raw.request("DELETE", RawApi.item("/api/v1/namespaces/nvtopo/pods",
                                              pod["metadata"]["name"]), what="cleanup")  # fmt: skip
