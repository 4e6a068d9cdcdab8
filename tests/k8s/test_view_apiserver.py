"""The watched view of slices and claims against a real kube-apiserver.

It must agree with a fresh read-back (:func:`cluster_from_kubernetes`) after every change,
see a claim allocated by anyone within the watch latency, list again when the server says
its resourceVersion is gone (410), and carry on across an apiserver restart.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import config
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.dra.publish import publish
from nvtopo.kube.client import RawApi
from nvtopo.kube.readback import COMPUTE_DOMAIN_DRIVER, cluster_from_kubernetes
from nvtopo.kube.view import ClusterView, Snapshot

from .conftest import controlplane
from .restartable import RestartablePlane

pytestmark = pytest.mark.k8s

CLAIMS = "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
LATENCY = 10.0  # seconds a change may take to reach the view (it is milliseconds here)


def make_namespace(raw: RawApi) -> str:
    name = f"view-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    raw.request("POST", "/api/v1/namespaces", what="namespace", body=body)
    return name


def allocate(raw: RawApi, ns: str, name: str, results: list[tuple[str, str, str]]) -> None:
    """A claim allocated to ``results`` (driver, pool, device), written as the scheduler does."""
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [
            {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvtopo.dev",
                                         "count": max(1, len(results))}},
        ]}},
    }  # fmt: skip
    path = CLAIMS.format(ns=ns)
    made = raw.request("POST", path, what=f"create claim {name}", body=body)
    made["status"] = {"allocation": {"devices": {"results": [
        {"request": "gpus", "driver": d, "pool": p, "device": dev} for d, p, dev in results
    ]}}}  # fmt: skip
    raw.request("PUT", f"{RawApi.item(path, name)}/status", what=f"allocate {name}", body=made)


def delete(raw: RawApi, ns: str, name: str) -> None:
    path = RawApi.item(CLAIMS.format(ns=ns), name)
    raw.request("DELETE", path, what=f"delete claim {name}")


def until(
    view: ClusterView, test: Callable[[Snapshot], bool], timeout: float = LATENCY
) -> Snapshot:
    """The first snapshot that passes ``test``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    snap = view.snapshot()
    while not test(snap):
        left = deadline - time.monotonic()
        assert left > 0, f"view did not get there in {timeout}s (version {snap.version})"
        view.wait(snap.version, timeout=left)
        snap = view.snapshot()
    return snap


def same(a: nvtopo.Cluster, b: nvtopo.Cluster) -> None:
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    for x, y in zip(a.nodes, b.nodes, strict=True):
        assert (x.topology, x.domain, x.free, x.in_compute_domain) == (
            y.topology, y.domain, y.free, y.in_compute_domain,
        ), x.name  # fmt: skip


def test_view_follows_slices_and_claims(k8s_client: ApiClient) -> None:
    driver = f"vw{uuid.uuid4().hex[:6]}.nvtopo.dev"
    racks = nvtopo.cluster("gb200-nvl72x2")
    boxes = nvtopo.Cluster((*racks.nodes, nvtopo.ClusterNode("h100-0", nvtopo.system("dgx-h100"))))
    publish(k8s_client, boxes, driver=driver)
    raw = RawApi(k8s_client)
    ns = make_namespace(raw)
    seen: list[int] = []
    with ClusterView(k8s_client, driver=driver, on_change=seen.append) as view:
        assert view.wait_synced(timeout=30)
        snap = view.snapshot()
        assert snap.synced and snap.version == view.version and seen
        same(snap.cluster, cluster_from_kubernetes(k8s_client, driver=driver))
        assert len(snap.cluster.cliques) == 2 and snap.allocated == {}
        assert view.snapshot() is snap  # built once per version

        # A claim allocated behind the view's back: its GPUs leave the free set.
        allocate(raw, ns, "job-a", [(driver, "h100-0", "gpu-2"), (driver, "h100-0", "gpu-5")])
        snap = until(view, lambda s: "h100-0" in s.allocated)
        assert snap.allocated["h100-0"] == {"gpu-2", "gpu-5"}
        assert snap.cluster.node("h100-0").free == (0, 1, 3, 4, 6, 7)
        same(snap.cluster, cluster_from_kubernetes(k8s_client, driver=driver))

        # Another driver's claim takes nothing; a ComputeDomain channel marks its node.
        tray = racks.nodes[0].name
        allocate(raw, ns, "other", [("gpu.nvidia.com", tray, "gpu-0")])
        allocate(raw, ns, "cd", [(COMPUTE_DOMAIN_DRIVER, tray, "channel-0")])
        snap = until(view, lambda s: s.cluster.node(tray).in_compute_domain)
        assert snap.cluster.node(tray).free == (0, 1, 2, 3)
        same(snap.cluster, cluster_from_kubernetes(k8s_client, driver=driver))

        # A new node's slices arrive; a deleted claim frees its GPUs.
        publish(k8s_client, nvtopo.system("hgx-b200"), node="b200-0", driver=driver)
        delete(raw, ns, "job-a")
        snap = until(
            view,
            lambda s: "h100-0" not in s.allocated and "b200-0" in {n.name for n in s.cluster},
        )
        assert snap.cluster.node("h100-0").free == tuple(range(8))
        same(snap.cluster, cluster_from_kubernetes(k8s_client, driver=driver))
        assert seen[-1] <= view.version and seen == sorted(seen)
        # A ComputeDomain channel (and another driver's claim) names a node whatever the
        # driver of the test: leave none behind for other tests on this apiserver.
        delete(raw, ns, "cd")
        delete(raw, ns, "other")
        until(view, lambda s: not s.cluster.node(tray).in_compute_domain)
    assert view.stats["lists"] == 2 and view.stats["gone"] == 0


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePlane]:
    # Without the watch cache every watch is served by etcd, which answers a watch from a
    # compacted revision with 410 Gone at once (the cache would replay it from memory).
    p = RestartablePlane(
        controlplane, tmp_path_factory.mktemp("k8s-restart"), ("--watch-cache=false",)
    )
    try:
        yield p
    finally:
        p.close()


def client_for(plane: RestartablePlane) -> Any:
    return config.new_client_from_config(config_file=str(plane.plane.kubeconfig))  # type: ignore[no-untyped-call]


def compact_etcd(etcd_url: str) -> int:
    """Compact etcd's history up to its current revision (what the apiserver does every
    five minutes); the revision compacted to."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{etcd_url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer

    revision = int(post("/v3/kv/range", {"key": "AA==", "limit": 1})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def test_view_lists_again_when_its_version_is_gone(plane: RestartablePlane) -> None:
    """A watch from a resourceVersion etcd has compacted away gets 410 Gone."""
    client = client_for(plane)
    driver = f"vw{uuid.uuid4().hex[:6]}.nvtopo.dev"
    publish(client, nvtopo.system("dgx-a100"), node="a100-0", driver=driver)
    raw = RawApi(client)
    ns = make_namespace(raw)
    try:
        with ClusterView(client, driver=driver) as view:
            assert view.wait_synced(timeout=30)
            # Drop the claims' watch and rewind its resume point to before the compaction,
            # as after a long disconnection: the server must refuse it and the view relist.
            allocate(raw, ns, "before", [(driver, "a100-0", "gpu-0")])
            until(view, lambda s: "a100-0" in s.allocated)
            compact_etcd(plane.plane.etcd_url)
            claims = view._stores[1]
            with view._lock:
                claims.resource_version = "1"
                for r in view._responses:
                    r.connection.sock.shutdown(socket.SHUT_RDWR)
            allocate(raw, ns, "job", [(driver, "a100-0", "gpu-1")])
            snap = until(view, lambda s: s.allocated.get("a100-0") == {"gpu-0", "gpu-1"})
            assert view.stats["gone"] >= 1 and view.stats["lists"] >= 3
            assert snap.cluster.node("a100-0").free == (2, 3, 4, 5, 6, 7)
    finally:
        client.close()


def test_view_resyncs_on_its_interval(k8s_client: ApiClient) -> None:
    driver = f"vw{uuid.uuid4().hex[:6]}.nvtopo.dev"
    publish(k8s_client, nvtopo.system("dgx-a100"), node="a100-0", driver=driver)
    with ClusterView(k8s_client, driver=driver, resync=1.0) as view:
        assert view.wait_synced(timeout=30)
        version = view.version
        deadline = time.monotonic() + 20
        while view.stats["lists"] < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert view.stats["lists"] >= 6
        assert view.version == version  # lists that find nothing new change nothing


@pytest.mark.slow
def test_view_survives_an_apiserver_restart(plane: RestartablePlane) -> None:
    client = client_for(plane)
    driver = "restart.nvtopo.dev"
    publish(client, nvtopo.system("dgx-h100"), node="h100-0", driver=driver)
    raw = RawApi(client)
    ns = make_namespace(raw)
    view = ClusterView(client, driver=driver, backoff=1.0).start()
    try:
        assert view.wait_synced(timeout=30)
        plane.stop_apiserver()
        time.sleep(1.0)  # the watches see the connection go
        plane.start_apiserver()
        allocate(raw, ns, "after", [(driver, "h100-0", "gpu-7")])
        snap = until(view, lambda s: "h100-0" in s.allocated, timeout=30)
        assert snap.cluster.node("h100-0").free == tuple(range(7))
        assert view.stats["reconnects"] >= 1
        same(snap.cluster, cluster_from_kubernetes(client, driver=driver))
    finally:
        view.stop()
        client.close()
