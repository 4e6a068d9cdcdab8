"""Reading the cluster back from a real kube-apiserver gives the placements of the original.

116 nodes (six GB200 NVL72 racks, each its own clique, plus eight 8-GPU nodes) are
published; jobs are placed on the original cluster and recorded as ResourceClaims whose
``status.allocation`` names the devices, the way the scheduler writes it; then
:meth:`nvtopo.Cluster.from_kubernetes` must rebuild a cluster on which :func:`nvtopo.place`
answers every request exactly as it does on the original with those GPUs busy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.dra.attributes import device_name
from nvtopo.dra.publish import publish
from nvtopo.exceptions import InfeasibleError
from nvtopo.kube import cluster_from_kubernetes
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.readback import COMPUTE_DOMAIN_DRIVER

pytestmark = pytest.mark.k8s

CLAIMS = "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"


def original() -> nvtopo.Cluster:
    racks = nvtopo.cluster("gb200-nvl72x6")
    boxes = [("dgx-h100", 3), ("hgx-b200", 2), ("dgx-a100", 2), ("dgx1-v100", 1)]
    extra = [
        nvtopo.ClusterNode(f"{kind}-{i}", nvtopo.system(kind))
        for kind, n in boxes
        for i in range(n)
    ]
    return nvtopo.Cluster(racks.nodes + tuple(extra))


@pytest.fixture(scope="module")
def namespaces(k8s_client: ApiClient) -> Iterator[list[str]]:
    raw = RawApi(k8s_client)
    names = [f"rb-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for n in names:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        raw.request("POST", "/api/v1/namespaces", what="namespace", body=body)
    yield names


def _claim(raw: RawApi, namespace: str, name: str, results: list[tuple[str, str, str]]) -> None:
    """A ResourceClaim allocated to ``results`` (driver, pool, device), status written as the
    scheduler writes it."""
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [
            {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvtopo.dev",
                                         "count": max(1, len(results))}},
        ]}},
    }  # fmt: skip
    path = CLAIMS.format(ns=namespace)
    made = raw.request("POST", path, what=f"create claim {name}", body=body)
    if not results:
        return  # pending: nothing allocated yet
    made["status"] = {"allocation": {"devices": {"results": [
        {"request": "gpus", "driver": d, "pool": p, "device": dev} for d, p, dev in results
    ]}}}  # fmt: skip
    raw.request("PUT", f"{RawApi.item(path, name)}/status", what=f"allocate {name}", body=made)


REQUESTS: list[dict[str, Any]] = [
    {"gpus": 1},
    {"gpus": 3},
    {"gpus": 8},
    {"gpus": 4, "nodes": 1, "domain": "none"},
    {"gpus": 16, "nodes": 4, "domain": "required"},
    {"gpus": 64, "nodes": 16, "domain": "required"},
    {"gpus": 72, "nodes": 18, "domain": "required"},
    {"gpus": 80, "nodes": 20, "domain": "preferred"},
    {"gpus": 144, "domain": "required"},  # infeasible: no clique that big
    {"gpus": 12, "domain": "none"},
]


def _answer(cluster: nvtopo.Cluster, request: dict[str, Any]) -> Any:
    try:
        return nvtopo.place(cluster, **request)
    except InfeasibleError as exc:
        return ("infeasible", str(exc))


def test_read_back_gives_the_same_placements(k8s_client: ApiClient, namespaces: list[str]) -> None:
    driver = f"rb{uuid.uuid4().hex[:6]}.nvtopo.dev"
    cluster = original()
    assert len(cluster.nodes) >= 100 and len(cluster.cliques) >= 3
    published = publish(k8s_client, cluster, driver=driver)
    assert published.created == len(cluster.nodes)

    # Jobs placed on the original, then recorded as allocated claims in two namespaces: one
    # claim per pod, that is per node, as a multi-node job's claim template makes them.
    state = nvtopo.ClusterState(cluster)
    jobs = [
        {"gpus": 16, "nodes": 4, "domain": "required"},
        {"gpus": 40, "nodes": 10, "domain": "required"},
        {"gpus": 6, "nodes": 1, "domain": "none"},
        {"gpus": 3, "nodes": 1, "domain": "none"},
        {"gpus": 68, "nodes": 17, "domain": "required"},
    ]
    raw = RawApi(k8s_client)
    by_name = {n.name: n for n in cluster.nodes}
    for i, job in enumerate(jobs):
        placed = state.allocate(**job).placement
        for k, node in enumerate(placed.nodes):
            gpus = {g.index: g for g in by_name[node.name].topology.gpus}
            results = [(driver, node.name, device_name(gpus[g])) for g in node.gpus]
            _claim(raw, namespaces[i % 2], f"job-{i}-{k}", results)
    # Claims that take no GPU of this driver: another driver's, one not yet allocated, and a
    # ComputeDomain channel on one node.
    _claim(raw, namespaces[0], "other", [("gpu.nvidia.com", "dgx-h100-0", "gpu-0")])
    _claim(raw, namespaces[1], "pending", [])
    _claim(raw, namespaces[1], "channel",
           [(COMPUTE_DOMAIN_DRIVER, "rack0005-tray00", "channel-0")])  # fmt: skip

    back = cluster_from_kubernetes(k8s_client, driver=driver)

    busy = nvtopo.Cluster(
        tuple(
            nvtopo.ClusterNode(
                n.name, n.topology, clique=n.clique,
                free_gpus=state.free_gpus(n.name),
                in_compute_domain=n.name == "rack0005-tray00",
            )
            for n in cluster.nodes
        )
    )  # fmt: skip
    assert sorted(n.name for n in back.nodes) == sorted(n.name for n in busy.nodes)
    for n in busy.nodes:
        got = back.node(n.name)
        assert got.topology == n.topology, n.name
        assert got.domain == n.domain, n.name
        assert got.free == n.free, n.name
        assert got.in_compute_domain == n.in_compute_domain, n.name
    assert back.cliques == busy.cliques and len(back.cliques) == 6
    assert sum(len(n.free) for n in back.nodes) == state.free_count
    for request in REQUESTS:
        assert _answer(back, request) == _answer(busy, request), request
    # The busy GPUs matter: on the cluster with every GPU free, answers differ.
    assert any(_answer(cluster, r) != _answer(busy, r) for r in REQUESTS)

    # Racks share topology objects after read-back too: the core loads one per kind.
    assert nvtopo.ClusterState(back).topology_count == nvtopo.ClusterState(busy).topology_count


def test_read_back_takes_the_newest_generation_of_a_pool(k8s_client: ApiClient) -> None:
    driver = f"rb{uuid.uuid4().hex[:6]}.nvtopo.dev"
    publish(k8s_client, nvtopo.system("dgx-a100"), node="n1", driver=driver)
    publish(k8s_client, nvtopo.system("hgx-b200"), node="n1", driver=driver)
    # A stale slice of generation 1 that a crashed publisher left behind.
    raw = RawApi(k8s_client)
    [s] = raw.list(RESOURCE_SLICES, what="list", field_selector=f"spec.driver={driver}")
    assert s["spec"]["pool"]["generation"] == 2
    stale = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": "n1-leftover"},
        "spec": {**s["spec"], "pool": {**s["spec"]["pool"], "generation": 1}},
    }
    raw.request("POST", RESOURCE_SLICES, what="stale", body=stale)
    back = cluster_from_kubernetes(k8s_client, driver=driver)
    assert back.node("n1").topology == nvtopo.system("hgx-b200")
    result = publish(k8s_client, nvtopo.system("hgx-b200"), node="n1", driver=driver)
    assert result.deleted == 1  # the publisher removes the leftover on its next run
