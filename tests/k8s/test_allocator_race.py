"""The allocator and the stock scheduler at work on the same nodes at the same time.

``deploy/allocator-policy.yaml`` (with its DeviceClass renamed to this test's) makes the
allocator the only allocator of nvtopo's devices: in an allocator namespace a pod with
claims must carry the gate, and nvtopo's class is refused in every other namespace. Then,
for a bounded time, gangs come and go through the allocator while ungated pods elsewhere
are allocated devices of another driver on the same nodes by the scheduler; no device is
ever in two claims.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo import dra
from nvtopo.kube.client import RESOURCE_SLICES, RawApi

from .allocator_env import devices_in_claims, make_env, wait_for

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
DURATION_S = 20.0


def _install_policy(api: RawApi, driver: str, suffix: str) -> list[str]:
    text = (ROOT / "deploy" / "allocator-policy.yaml").read_text().replace("gpu.nvtopo.dev", driver)
    paths = []
    for doc in yaml.safe_load_all(text):
        doc["metadata"]["name"] += f"-{suffix}"
        if doc["kind"].endswith("Binding"):
            doc["spec"]["policyName"] += f"-{suffix}"
        plural = (
            "validatingadmissionpolicies"
            if doc["kind"] == "ValidatingAdmissionPolicy"
            else "validatingadmissionpolicybindings"
        )
        api.request("POST", f"{ADMISSION}/{plural}", what=doc["kind"], body=doc)
        paths.append(f"{ADMISSION}/{plural}/{doc['metadata']['name']}")
    return paths


def _refused(call: Any) -> str:
    try:
        call()
    except ApiException as exc:
        assert exc.status in (403, 422), exc
        return str(exc.body)
    return ""


def test_scheduler_and_allocator_never_share_a_device(
    apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any
) -> None:
    api = RawApi(k8s_client)
    gangs = make_env(api, apiserver)
    others = make_env(api, apiserver, enabled=False)
    suffix = uuid.uuid4().hex[:6]
    cluster = nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:8])
    gangs.publish(cluster)
    # A second driver on the same nodes, for the scheduler to allocate ungated pods from.
    for s in dra.cluster_resource_slices(cluster, driver=others.driver):
        api.request("POST", RESOURCE_SLICES, what="slice", body=s)
    policies = _install_policy(api, gangs.driver, suffix)
    try:
        gangs.template("two", 2)
        others.template("one", 1)
        exactly = {"deviceClassName": gangs.driver, "allocationMode": "ExactCount", "count": 1}
        rogue = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"generateName": "rogue-", "namespace": others.namespace},
            "spec": {"spec": {"devices": {"requests": [{"name": "g", "exactly": exactly}]}}},
        }
        # The policy takes a moment to reach admission: wait until it refuses.
        msg = wait_for(
            "the policy to refuse nvtopo's class outside allocator namespaces",
            lambda: _refused(
                lambda: api.request(
                    "POST",
                    f"/apis/resource.k8s.io/v1/namespaces/{others.namespace}/resourceclaimtemplates",
                    what="rogue",
                    body=rogue,
                )
            ),
        )
        assert "allocated by the nvtopo allocator only" in msg
        msg = wait_for(
            "the policy to refuse an ungated pod",
            lambda: _refused(
                lambda: gangs.pod(f"ungated-{uuid.uuid4().hex[:4]}", "two", gated=False)
            ),
        )
        assert "topology.nvtopo.dev/placement" in msg

        rng = random.Random(11)
        made, loose = 0, 0
        deadline = time.monotonic() + DURATION_S
        with gangs.running():
            while time.monotonic() < deadline:
                gangs.gang(f"g{made}", rng.randint(1, 3), "two", domain="preferred")
                made += 1
                for _ in range(2):
                    others.pod(f"p{loose}", "one", gated=False)
                    loose += 1
                if made > 3 and rng.random() < 0.5:
                    victim = rng.randrange(made - 3)
                    for p in gangs.pods():
                        if p["metadata"]["name"].startswith(f"g{victim}-"):
                            gangs.delete_pod(p["metadata"]["name"])
                for driver in (gangs.driver, others.driver):
                    used = devices_in_claims(gangs.claims(), driver)
                    assert len(used) == len(set(used)), f"a {driver} device in two claims"
                time.sleep(0.3)
            bound = [p for p in gangs.pods() if p["spec"].get("nodeName")]
        scheduled = [p for p in others.pods() if p["spec"].get("nodeName")]
        assert bound and scheduled, (len(bound), len(scheduled))
        print(f"{made} gangs, {len(bound)} gang pods and {len(scheduled)} ungated pods bound")
        for driver in (gangs.driver, others.driver):
            used = devices_in_claims(gangs.claims(), driver)
            assert len(used) == len(set(used))
    finally:
        for path in reversed(policies):
            api.request("DELETE", path, what="delete policy")
