"""The test control plane's real kube-scheduler and kube-controller-manager.

One end-to-end pass through unmodified upstream code: a Job whose pod template names a
ResourceClaimTemplate; the Job controller makes the pod, the ResourceClaim controller the
claim, the scheduler's DRA plugin allocates nvtopo's devices and binds the pod to the one
Ready node that publishes them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo import dra
from nvtopo.kube.client import RESOURCE_SLICES, RawApi

pytestmark = pytest.mark.k8s


def _wait(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_nodes_are_ready_and_untainted(
    apiserver: Any, k8s_client: ApiClient, ready_nodes: Callable[..., None]
) -> None:
    name = f"ready-{uuid.uuid4().hex[:6]}"
    ready_nodes([name], labels={name: {"rack": "r1"}})
    node = RawApi(k8s_client).request("GET", f"/api/v1/nodes/{name}", what="get node")
    assert not node["spec"].get("taints")
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert [c["status"] for c in ready] == ["True"]
    assert node["metadata"]["labels"]["rack"] == "r1"


def test_components_report_the_pinned_release(apiserver: Any, k8s_client: ApiClient) -> None:
    version = RawApi(k8s_client).request("GET", "/version", what="version")
    assert version["gitVersion"] == apiserver.binaries.kubernetes_version
    assert version["gitVersion"].startswith("v1.37.")


def test_job_with_claim_template_is_allocated_and_bound(
    apiserver: Any,
    k8s_client: ApiClient,
    scheduler: Any,
    controller_manager: Any,
    ready_nodes: Callable[..., None],
) -> None:
    api = RawApi(k8s_client)
    suffix = uuid.uuid4().hex[:6]
    node, ns = f"sched-{suffix}", f"sched-{suffix}"
    api.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": ns}})
    ready_nodes([node])
    driver = f"s{suffix}.nvtopo.dev"
    for c in dra.device_classes(driver):
        api.request("POST", "/apis/resource.k8s.io/v1/deviceclasses", what="class", body=c)
    for s in dra.resource_slices(nvtopo.system("dgx-h100"), node=node, driver=driver):
        api.request("POST", RESOURCE_SLICES, what="slice", body=s)
    template = dra.claim_template(gpus=4, name="four", namespace=ns, driver=driver)
    api.request(
        "POST",
        f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaimtemplates",
        what="template",
        body=template,
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "four"}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "resources": {"claims": [{"name": "gpus"}]},
                        }
                    ],
                }
            }
        },
    }
    api.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", what="job", body=job)

    def bound() -> dict[str, Any] | None:
        pods = api.request("GET", f"/api/v1/namespaces/{ns}/pods", what="pods")["items"]
        return next((p for p in pods if p["spec"].get("nodeName")), None)

    pod = _wait("the Job's pod to be bound", bound)
    assert pod["spec"]["nodeName"] == node
    [status] = pod["status"]["resourceClaimStatuses"]
    claims = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
    claim = api.request("GET", f"{claims}/{status['resourceClaimName']}", what="claim")
    results = claim["status"]["allocation"]["devices"]["results"]
    assert len(results) == 4 and {r["pool"] for r in results} == {node}
    # On an empty DGX H100 the set4 alternative holds: four GPUs of one Contract 1 group.
    assert {r["request"] for r in results} == {"gpus/set4"}
    assert [r["uid"] for r in claim["status"]["reservedFor"]] == [pod["metadata"]["uid"]]
