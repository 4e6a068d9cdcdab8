"""A cluster for the allocator tests on the real control plane (apiserver, scheduler,
controller-manager): Ready nodes, their ResourceSlices under a driver of the test's own (so
tests do not see each other's GPUs), the DeviceClass, and gated gang pods with claims.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from nvtopo import dra
from nvtopo.allocator import (
    DOMAIN_ANNOTATION,
    GANG_LABEL,
    GATE,
    SEGMENT_ANNOTATION,
    SIZE_ANNOTATION,
    Allocator,
)
from nvtopo.allocator.plan import allocation_result
from nvtopo.dra.publish import cluster_slices
from nvtopo.kube.client import RESOURCE_CLAIMS, RESOURCE_SLICES, RawApi
from nvtopo.model import Cluster

from .conftest import controlplane

RESOURCE = "/apis/resource.k8s.io/v1"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, step: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Env:
    """One test's slice of the cluster: namespace, driver (= DeviceClass) and its nodes."""

    api: RawApi
    plane: Any
    namespace: str
    driver: str

    def allocator(self, **kwargs: Any) -> Allocator:
        return Allocator(self.api.client, driver=self.driver, topology_driver=self.driver, **kwargs)

    @contextmanager
    def running(self, interval: float = 0.05) -> Iterator[Allocator]:
        """The allocator in a thread of this process for the ``with`` block."""
        worker = self.allocator()
        stop = threading.Event()
        thread = threading.Thread(
            target=worker.run, kwargs={"interval": interval, "stop": stop.is_set}, daemon=True
        )
        thread.start()
        try:
            yield worker
        finally:
            stop.set()
            thread.join(30)

    # -- cluster -------------------------------------------------------------------------
    def publish(self, cluster: Cluster) -> None:
        """Ready Node objects and the driver's ResourceSlices for every node of ``cluster``."""
        controlplane.add_nodes(self.plane, [n.name for n in cluster.nodes])
        pools = cluster_slices(cluster, driver=self.driver)
        for s in (s for pool in pools.values() for s in pool):
            self.api.request("POST", RESOURCE_SLICES, what="slice", body=s)

    def template(self, name: str, gpus: int) -> None:
        """A ResourceClaimTemplate asking for ``gpus`` devices of the driver's class."""
        exactly = {"deviceClassName": self.driver, "allocationMode": "ExactCount", "count": gpus}
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}}},
        }
        self.api.request(
            "POST",
            f"{RESOURCE}/namespaces/{self.namespace}/resourceclaimtemplates",
            what="t",
            body=body,
        )

    def occupy(self, node: str, devices: Iterable[str], name: str | None = None) -> str:
        """A claim already allocated ``devices`` of ``node`` (capacity used by someone else)."""
        name = name or f"used-{uuid.uuid4().hex[:8]}"
        devices = list(devices)
        exactly = {
            "deviceClassName": self.driver,
            "allocationMode": "ExactCount",
            "count": len(devices),
        }
        claim = self.api.request(
            "POST",
            f"{RESOURCE}/namespaces/{self.namespace}/resourceclaims",
            what="claim",
            body={
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}},
            },
        )
        results = tuple(("gpus", self.driver, node, d) for d in devices)
        claim["status"] = {"allocation": allocation_result(node, results)}
        self.api.request(
            "PUT", f"{RESOURCE}/namespaces/{self.namespace}/resourceclaims/{name}/status",
            what="allocate", body=claim,
        )  # fmt: skip
        return name

    def release(self, claim: str) -> None:
        self.api.request(
            "DELETE", f"{RESOURCE}/namespaces/{self.namespace}/resourceclaims/{claim}", what="del"
        )

    # -- pods ----------------------------------------------------------------------------
    def gang(
        self,
        name: str,
        size: int,
        template: str,
        *,
        domain: str = "required",
        segment: int | None = None,
        gated: bool = True,
    ) -> list[str]:
        """Create the ``size`` pods of gang ``name``, each with a claim from ``template``."""
        annotations = {SIZE_ANNOTATION: str(size), DOMAIN_ANNOTATION: domain}
        if segment:
            annotations[SEGMENT_ANNOTATION] = str(segment)
        names = [f"{name}-{i}" for i in range(size)]
        for pod in names:
            self.pod(pod, template, labels={GANG_LABEL: name}, annotations=annotations, gated=gated)
        return names

    def pod(
        self,
        name: str,
        template: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        gated: bool = True,
        claim: str | None = None,
    ) -> dict[str, Any]:
        source = {"resourceClaimName": claim} if claim else {"resourceClaimTemplateName": template}
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "resourceClaims": [{"name": "gpus", **source}],
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"claims": [{"name": "gpus"}]}}
            ],
        }
        if gated:
            spec["schedulingGates"] = [{"name": GATE}]
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": dict(labels or {}),
                "annotations": dict(annotations or {}),
            },
            "spec": spec,
        }
        return self.api.request(
            "POST", f"/api/v1/namespaces/{self.namespace}/pods", what="pod", body=body
        )

    def pods(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        items = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/pods", what="pods")[
            "items"
        ]
        if names is None:
            return list(items)
        wanted = set(names)
        return [p for p in items if p["metadata"]["name"] in wanted]

    def claims(self) -> list[dict[str, Any]]:
        return list(self.api.list(RESOURCE_CLAIMS, what="claims"))

    def claim_of(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        statuses = (pod.get("status") or {}).get("resourceClaimStatuses") or []
        name = next((s.get("resourceClaimName") for s in statuses), None)
        name = name or next(
            (c.get("resourceClaimName") for c in pod["spec"].get("resourceClaims") or []), None
        )
        return self.claim_of_name(name) if name else None

    def claim_of_name(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.request(
                "GET", f"{RESOURCE}/namespaces/{self.namespace}/resourceclaims/{name}", what="c"
            )
        except ApiException:
            return None

    def delete_pod(self, name: str) -> None:
        self.api.request(
            "DELETE",
            f"/api/v1/namespaces/{self.namespace}/pods/{name}",
            what="delete pod",
            query=[("gracePeriodSeconds", 0)],
        )

    def bound(self, names: Iterable[str], timeout: float = 60.0) -> dict[str, str]:
        """Wait until every pod in ``names`` is bound; ``{pod: node}``."""
        names = list(names)

        def probe() -> dict[str, str] | None:
            pods = self.pods(names)
            nodes = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}
            return nodes if len(nodes) == len(names) and all(nodes.values()) else None

        result: dict[str, str] = wait_for(f"pods {names[:3]}... bound", probe, timeout)
        return result


def make_env(api: RawApi, plane: Any, *, enabled: bool = True) -> Env:
    """A fresh namespace (labelled for the allocator) and driver name."""
    suffix = uuid.uuid4().hex[:8]
    namespace, driver = f"alloc-{suffix}", f"a{suffix}.nvtopo.dev"
    labels = {"topology.nvtopo.dev/allocator": "enabled"} if enabled else {}
    api.request(
        "POST",
        "/api/v1/namespaces",
        what="ns",
        body={"metadata": {"name": namespace, "labels": labels}},
    )
    for c in dra.device_classes(driver):
        api.request("POST", f"{RESOURCE}/deviceclasses", what="class", body=c)
    return Env(api, plane, namespace, driver)


def devices_in_claims(claims: Iterable[Mapping[str, Any]], driver: str) -> list[tuple[str, str]]:
    """Every (pool, device) of ``driver`` in the claims' allocations, repeats kept."""
    out = []
    for c in claims:
        allocation = (c.get("status") or {}).get("allocation") or {}
        for r in (allocation.get("devices") or {}).get("results") or []:
            if r.get("driver") == driver:
                out.append((str(r["pool"]), str(r["device"])))
    return out
