"""Kueue's own controller places gangs inside one NVLink domain from nvtopo's export.

Kueue's controller manager, built from the ``sigs.k8s.io/kueue`` Go module, runs against the
test apiserver. The cluster is three GB200 NVL72 racks (54 Node objects with 4 GPUs each,
labelled by ``nvtopo export --to labels``); Kueue's ``Topology`` is ``nvtopo export --to
kueue``. Kueue Workloads (created directly: the test control plane runs no Job controller
and registers no webhooks) of 16, 16 and 18 pods of 4 GPUs each ask for
``topology.nvtopo.dev/clique`` as their required topology: Kueue's topology-aware scheduling
must put each gang's pods on nodes of one clique, the gangs on different nodes, and the
18-pod gang on the one rack the first two left whole.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.export import export
from nvtopo.kube.client import RawApi
from tests.export.build import kueue_crds, kueue_manager

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
METRICS_CERTS = Path("/etc/kueue/metrics/certs")
CLUSTER = nvtopo.cluster("gb200-nvl72x3")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def apply(client: ApiClient, obj: dict[str, Any], path: str) -> dict[str, Any]:
    request = client.param_serialize(
        method="PATCH",
        resource_path=path,
        query_params=[("fieldManager", "nvtopo-test"), ("force", "true")],
        header_params={
            "Accept": "application/json",
            "Content-Type": "application/apply-patch+yaml",
        },
        body=json.dumps(obj),
        auth_settings=["BearerToken"],
    )
    for _ in range(100):  # a new CRD's endpoint answers 404 for a moment
        response = client.call_api(*request)
        data = response.read()
        if response.status != 404:
            break
        time.sleep(0.2)
    assert 200 <= response.status < 300, (response.status, data[:500])
    result: dict[str, Any] = json.loads(data)
    return result


def _node(raw: RawApi, obj: dict[str, Any], prefix: str) -> str:
    name = prefix + obj["metadata"]["name"]
    labels = {**obj["metadata"]["labels"], "kubernetes.io/hostname": name,
              "node.kubernetes.io/instance-type": "gb200-tray"}  # fmt: skip
    meta = {"name": name, "labels": labels}
    raw.request("POST", "/api/v1/nodes", what="node",
                body={"apiVersion": "v1", "kind": "Node", "metadata": meta})  # fmt: skip
    node = raw.request("GET", RawApi.item("/api/v1/nodes", name), what="node")
    node["spec"]["taints"] = []  # the not-ready taint of a node no kubelet runs
    node = raw.request("PUT", RawApi.item("/api/v1/nodes", name), what="node", body=node)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    size = {"cpu": "144", "memory": "960Gi", "pods": "110", "nvidia.com/gpu": "4"}
    node["status"] = {"capacity": size, "allocatable": size, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
         "lastHeartbeatTime": now, "lastTransitionTime": now}]}  # fmt: skip
    raw.request("PUT", RawApi.item("/api/v1/nodes", name) + "/status", what="node", body=node)
    return name


@pytest.fixture(scope="module")
def kueue(
    k8s_client: ApiClient, apiserver: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Kueue's CRDs, the 54 nodes, a flavor, queues, and Kueue's manager running."""
    binary = kueue_manager()
    raw = RawApi(k8s_client)
    from kubernetes.client.exceptions import ApiException

    for f in sorted(kueue_crds().glob("*.yaml")):
        try:
            raw.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                        what="crd", body=yaml.safe_load(f.read_text()))  # fmt: skip
        except ApiException as exc:
            if exc.status != 409:
                raise
    try:
        meta = {"name": "kueue-system"}
        raw.request("POST", "/api/v1/namespaces", what="ns",
                    body={"apiVersion": "v1", "kind": "Namespace", "metadata": meta})  # fmt: skip
    except ApiException as exc:
        if exc.status != 409:
            raise
    prefix = f"k{uuid.uuid4().hex[:4]}-"
    names = {_node(raw, obj, prefix): obj["metadata"]["name"] for obj in export(CLUSTER, "labels")}
    topology = export(CLUSTER, "kueue", name=f"{prefix}nvtopo")[0]
    apply(k8s_client, topology, f"{KUEUE}/topologies/{topology['metadata']['name']}")
    flavor = f"{prefix}gb200"
    apply(k8s_client, {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                       "metadata": {"name": flavor},
                       "spec": {"nodeLabels": {"node.kubernetes.io/instance-type": "gb200-tray"},
                                "topologyName": topology["metadata"]["name"]}},
          f"{KUEUE}/resourceflavors/{flavor}")  # fmt: skip
    apply(k8s_client, {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
                       "metadata": {"name": flavor},
                       "spec": {"namespaceSelector": {}, "resourceGroups": [{
                           "coveredResources": ["nvidia.com/gpu"],
                           "flavors": [{"name": flavor, "resources": [
                               {"name": "nvidia.com/gpu", "nominalQuota": "216"}]}]}]}},
          f"{KUEUE}/clusterqueues/{flavor}")  # fmt: skip
    apply(k8s_client, {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                       "metadata": {"name": flavor, "namespace": "default"},
                       "spec": {"clusterQueue": flavor}},
          f"{KUEUE}/namespaces/default/localqueues/{flavor}")  # fmt: skip
    work = tmp_path_factory.mktemp("kueue")
    certs = work / "certs"
    # Kueue's webhook and metrics servers want a certificate; nothing calls them (no webhook
    # is registered). With its own certificate management off, Kueue reads the metrics one
    # from a fixed path.
    for where in (certs, METRICS_CERTS):
        if not (where / "tls.crt").exists():
            where.mkdir(parents=True, exist_ok=True)
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "3650", "-subj", "/CN=kueue",
                            "-keyout", str(where / "tls.key"), "-out", str(where / "tls.crt")],
                           check=True, capture_output=True)  # fmt: skip
    config = {"apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
              "namespace": "kueue-system", "internalCertManagement": {"enable": False},
              "leaderElection": {"leaderElect": False},
              "webhook": {"port": _free_port(), "host": "127.0.0.1", "certDir": str(certs)},
              "metrics": {"bindAddress": "0"}, "health": {"healthProbeBindAddress": "127.0.0.1:0"},
              "integrations": {"frameworks": ["batch/job"]},
              "featureGates": {"VisibilityOnDemand": False}}  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    log = (work / "kueue.log").open("w")
    proc = subprocess.Popen(
        [str(binary), "--config", str(work / "config.yaml"),
         "--kubeconfig", str(apiserver.kubeconfig)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield {"queue": flavor, "prefix": prefix, "log": str(work / "kueue.log"), **names}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for name in names:
            raw.request("DELETE", RawApi.item("/api/v1/nodes", name), what="cleanup")


def assigned_nodes(assignment: dict[str, Any]) -> list[str]:
    """Host names of a v1beta2 ``topologyAssignment`` (levels; slices of per-level values)."""
    levels = assignment["levels"]
    host = levels.index("kubernetes.io/hostname")
    nodes: list[str] = []
    for piece in assignment["slices"]:
        values = piece["valuesPerLevel"][host]
        if "universal" in values:
            nodes.extend([values["universal"]] * int(piece["domainCount"]))
            continue
        each = values["individual"]
        nodes.extend(
            f"{each.get('prefix', '')}{root}{each.get('suffix', '')}" for root in each["roots"]
        )
    return nodes


def _admitted(raw: RawApi, name: str, log: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        w = raw.request("GET", f"{KUEUE}/namespaces/default/workloads/{name}", what="workload")
        admission = (w.get("status") or {}).get("admission")
        if admission:
            assignment: dict[str, Any] = admission["podSetAssignments"][0]["topologyAssignment"]
            return assignment
        time.sleep(0.5)
    tail = Path(log).read_text()[-2000:]
    raise AssertionError(f"workload {name} not admitted: {json.dumps(w.get('status'))}\n{tail}")


def test_kueue_puts_each_gang_inside_one_clique(
    k8s_client: ApiClient, kueue: dict[str, str]
) -> None:
    raw = RawApi(k8s_client)
    clique_of = {n.name: n.domain for n in CLUSTER.nodes}
    used: list[str] = []
    for i, pods in enumerate((16, 16, 18)):
        name = f"{kueue['prefix']}job{i}"
        apply(k8s_client, {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
                           "metadata": {"name": name, "namespace": "default"},
                           "spec": {"queueName": kueue["queue"], "podSets": [{
                               "name": "main", "count": pods,
                               "topologyRequest": {"required": "topology.nvtopo.dev/clique"},
                               "template": {"spec": {"restartPolicy": "Never", "containers": [{
                                   "name": "train", "image": "train",
                                   "resources": {"requests": {"nvidia.com/gpu": "4"},
                                                 "limits": {"nvidia.com/gpu": "4"}}}]}}}]}},
              f"{KUEUE}/namespaces/default/workloads/{name}")  # fmt: skip
        nodes = assigned_nodes(_admitted(raw, name, kueue["log"]))
        assert len(nodes) == pods and len(set(nodes)) == pods  # 4 GPUs a pod, 4 a node
        cliques = {clique_of[kueue[n]] for n in nodes}
        assert len(cliques) == 1, f"{name} spans {cliques}"
        assert not set(nodes) & set(used)
        used.extend(nodes)
    # The three gangs took the three racks: 16 + 16 + 18 nodes, one clique each.
    assert len({clique_of[kueue[n]] for n in used}) == 3
