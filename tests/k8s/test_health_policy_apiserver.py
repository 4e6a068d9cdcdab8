"""deploy/health-policy.yaml on the real apiserver: an agent writes the health condition and
the DeviceTaintRules of its own node only (tokens bound to a Pod on node-a, as in
test_admission_policy_apiserver)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.catalog import with_lost_nvlinks
from nvtopo.dra.health_agent import DEVICE_TAINT_RULES, reconcile_node_condition
from nvtopo.dra.taints import taint_rules
from nvtopo.kube.client import RawApi

from .test_admission_policy_apiserver import (
    NODE,
    OTHER,
    _client,
    _create,
    _delete,
    _manifests,
    _refusal,
    agent,
    cluster,
)

pytestmark = pytest.mark.k8s
__all__ = ["agent", "cluster"]


def _rule(node: str, pool: str) -> dict[str, Any]:
    tray = with_lost_nvlinks(nvtopo.system("gb200-tray"), [1])
    [rule] = taint_rules(tray, node=node, devices_by_uuid={str(tray.gpu(1).uuid): "gpu-1"})
    rule["metadata"]["name"] = f"probe-{uuid.uuid4().hex[:8]}"
    rule["spec"]["deviceSelector"]["pool"] = pool
    return rule


def _probe_refused(client: ApiClient) -> bool:
    """Whether the policy refuses a dry-run rule for another node's pool."""
    try:
        RawApi(client).request(
            "POST", DEVICE_TAINT_RULES, what="probe", body=_rule(OTHER, OTHER),
            query=[("dryRun", "All")],
        )  # fmt: skip
    except Exception:
        return True
    return False


def _wait(client: ApiClient, *, refused: bool) -> None:
    # A policy takes effect, and stops, a moment after it is created or deleted.
    deadline = time.monotonic() + 30
    while _probe_refused(client) != refused:
        assert time.monotonic() < deadline, f"the health policy did not turn {refused}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def health_policy(k8s_client: ApiClient, cluster: dict[str, str], apiserver: Any) -> Iterator[None]:
    raw = RawApi(k8s_client)
    docs = _manifests("health-policy.yaml")
    with _client(apiserver, cluster["pod"]) as probe:
        for doc in docs:
            _create(raw, doc)
        _wait(probe, refused=True)
        try:
            yield
        finally:
            for doc in reversed(docs):
                _delete(raw, doc)
            # Later tests write node status with the same ServiceAccount and unbound tokens.
            _wait(probe, refused=False)


def test_the_agent_writes_its_own_nodes_condition_and_rules(
    agent: ApiClient, k8s_client: ApiClient, health_policy: None
) -> None:
    api = RawApi(agent)
    bad = with_lost_nvlinks(nvtopo.system("gb200-tray"), [0])
    assert reconcile_node_condition(api, NODE, bad) is True
    assert reconcile_node_condition(api, NODE, nvtopo.system("gb200-tray")) is True
    rule = _rule(NODE, NODE)
    api.request("POST", DEVICE_TAINT_RULES, what="rule", body=rule)
    api.request("DELETE", RawApi.item(DEVICE_TAINT_RULES, rule["metadata"]["name"]), what="rule")


def test_another_nodes_status_and_rules_are_refused(
    agent: ApiClient, k8s_client: ApiClient, health_policy: None
) -> None:
    api = RawApi(agent)
    status, message = _refusal(
        lambda: reconcile_node_condition(
            api, OTHER, with_lost_nvlinks(nvtopo.system("gb200-tray"), [0])
        )
    )
    assert status == 403 and f"on node {NODE} may not update the status of Node {OTHER}" in message
    for node, pool in ((OTHER, OTHER), (NODE, OTHER), (OTHER, NODE)):
        status, message = _refusal(
            lambda n=node, p=pool: api.request(  # type: ignore[misc]
                "POST", DEVICE_TAINT_RULES, what="rule", body=_rule(n, p)
            )
        )
        assert status == 403 and "may write only DeviceTaintRules of its own pool" in message


def test_other_conditions_of_its_own_node_are_left_alone(
    agent: ApiClient, health_policy: None
) -> None:
    api = RawApi(agent)
    path = RawApi.item("/api/v1/nodes", NODE)
    node = api.request("GET", path, what="node")
    conditions = (node.get("status") or {}).get("conditions") or []
    node.setdefault("status", {})["conditions"] = [
        *conditions,
        {"type": "Ready", "status": "False", "reason": "Forged", "message": "by the agent"},
    ]
    status, message = _refusal(
        lambda: api.request("PUT", f"{path}/status", what="status", body=node)
    )
    assert status == 403 and "may change only the NVLinkCliqueDegraded condition" in message
