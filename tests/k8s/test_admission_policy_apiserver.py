"""deploy/admission-policy.yaml against a real kube-apiserver: a publisher pod writes the
ResourceSlices of its own node and no other.

There is no kubelet or scheduler: a Pod object with ``spec.nodeName`` set is all the
apiserver needs to put the node into a token bound to that Pod, which is what the kubelet
mounts into the agent's pods. The policy is removed again at the end of the module, and the
module waits until the apiserver no longer enforces it, so the other tests' publisher
tokens (bound to no pod) keep working.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kube
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo.dra.publish import node_slices, publish
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "nvtopo"
ACCOUNT = "nvtopo-publisher"
POLICY = "nvtopo-publisher-own-node"
NODE, OTHER = "node-a", "node-b"
POD = "nvtopo-publisher-on-node-a"
# How long a new (or deleted) policy may take to reach the apiserver's admission chain.
SETTLE_S = 10.0

_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_PATHS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Node": "/api/v1/nodes",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "ValidatingAdmissionPolicy": f"{_ADMISSION}/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": f"{_ADMISSION}/validatingadmissionpolicybindings",
}


def _path(doc: dict[str, Any]) -> str:
    path = _PATHS[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
    return f"{path}/{doc['metadata']['name']}"


def _create(raw: RawApi, doc: dict[str, Any]) -> dict[str, Any]:
    """Create ``doc``; one made earlier in the session (409) is read back instead."""
    try:
        return raw.request("POST", _path(doc).rsplit("/", 1)[0], what=doc["kind"], body=doc)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return raw.request("GET", _path(doc), what=doc["kind"])


def _delete(raw: RawApi, doc: dict[str, Any]) -> None:
    try:
        raw.request("DELETE", _path(doc), what=f"delete {doc['kind']}")
    except ApiException as exc:
        if exc.status != 404:
            raise


def _manifests(name: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]


def _token(raw: RawApi, pod: dict[str, Any] | None) -> str:
    """A token of the publisher's ServiceAccount, bound to ``pod`` (or to nothing)."""
    spec: dict[str, Any] = {"expirationSeconds": 3600}
    if pod is not None:
        meta = pod["metadata"]
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod",
                                  "name": meta["name"], "uid": meta["uid"]}  # fmt: skip
    answer = raw.request(
        "POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token",
        what="token", body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                            "spec": spec},
    )  # fmt: skip
    return str(answer["status"]["token"])


def _client(apiserver: Any, token: str) -> ApiClient:
    config = kube.Configuration()
    config.host = apiserver.url
    config.ssl_ca_cert = str(apiserver.ca_file)
    config.api_key = {"authorization": f"Bearer {token}"}
    return ApiClient(config)


def _slice(name: str, node: str | None, driver: str) -> dict[str, Any]:
    """A small ResourceSlice of ``node`` (of every node when ``None``)."""
    where: dict[str, Any] = {"nodeName": node} if node else {"allNodes": True}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {"driver": driver, **where, "devices": [{"name": "gpu-0"}],
                 "pool": {"name": node or "all", "generation": 1, "resourceSliceCount": 1}},
    }  # fmt: skip


def _refusal(call: Callable[[], Any]) -> tuple[int | None, str]:
    """(status, message) of a request the apiserver refuses; fails the test if it succeeds."""
    try:
        call()
    except KubeApiError as exc:
        return exc.status, str(exc)
    except ApiException as exc:
        return exc.status, str(json.loads(str(exc.body))["message"])
    pytest.fail("the request was allowed")


def _denied(name: str) -> str:
    """How the apiserver introduces the policy's message for the slice ``name``."""
    return (
        f'resourceslices.resource.k8s.io "{name}" is forbidden: '
        f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "
    )


def _enforced(agent: ApiClient, driver: str) -> bool:
    """Whether the policy refuses a (dry-run) create of another node's slice by ``agent``."""
    body = _slice(f"probe-{uuid.uuid4().hex[:8]}", OTHER, driver)
    try:
        RawApi(agent).request("POST", RESOURCE_SLICES, what="probe", body=body,
                              query=[("dryRun", "All")])  # fmt: skip
    except ApiException as exc:
        if exc.status == 403 and POLICY in str(exc.body):
            return True
        raise
    return False


def _wait_until(agent: ApiClient, driver: str, *, enforced: bool) -> None:
    deadline = time.monotonic() + SETTLE_S
    while _enforced(agent, driver) != enforced:
        assert time.monotonic() < deadline, (
            f"the policy was {'not ' if enforced else ''}enforced within {SETTLE_S:.0f} s"
        )
        time.sleep(0.1)


@pytest.fixture
def driver(k8s_client: ApiClient) -> Iterator[str]:
    """A driver name of the test's own; its slices are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.nvtopo.dev"
    yield name
    api = RawApi(k8s_client)
    for s in api.list(RESOURCE_SLICES, what="cleanup", field_selector=f"spec.driver={name}"):
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, s["metadata"]["name"]), what="cleanup")


@pytest.fixture(scope="module")
def cluster(apiserver: Any, k8s_client: ApiClient) -> Iterator[dict[str, str]]:
    """The agent's RBAC and the policy in force, node-a, a publisher Pod bound to it, and
    the publisher's tokens: ``pod`` (bound to the Pod) and ``unbound``."""
    raw = RawApi(k8s_client)
    for doc in _manifests("rbac.yaml"):
        _create(raw, doc)  # the namespace and ServiceAccount first: the Pod names them
    nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in (NODE, OTHER)]
    for doc in nodes:
        _create(raw, doc)
    # The DaemonSet's own pod template, as the DaemonSet controller would stamp it on node-a
    # (no RuntimeClass object exists here, so the field naming one goes).
    [ds] = _manifests("daemonset.yaml")
    template = copy.deepcopy(ds["spec"]["template"])
    template["spec"].pop("runtimeClassName")
    template["spec"]["nodeName"] = NODE
    pod = _create(raw, {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {**template["metadata"], "name": POD, "namespace": NAMESPACE},
                        "spec": template["spec"]})  # fmt: skip
    tokens = {"pod": _token(raw, pod), "unbound": _token(raw, None)}
    policy = _manifests("admission-policy.yaml")
    probe = f"probe-{uuid.uuid4().hex[:6]}.nvtopo.dev"
    unbound = _client(apiserver, tokens["unbound"])
    try:
        for doc in policy:
            _create(raw, doc)
        _wait_until(unbound, probe, enforced=True)
        yield tokens
    finally:
        try:
            for doc in reversed(policy):
                _delete(raw, doc)
            # Later tests publish with the same ServiceAccount and tokens bound to no pod.
            _wait_until(unbound, probe, enforced=False)
        finally:
            unbound.close()  # type: ignore[no-untyped-call]
            _delete(raw, pod)
            for doc in nodes:
                _delete(raw, doc)


@pytest.fixture
def agent(apiserver: Any, cluster: dict[str, str]) -> Iterator[ApiClient]:
    """The publisher as its pod on node-a calls the apiserver."""
    with _client(apiserver, cluster["pod"]) as client:
        yield client


def stored(client: ApiClient, driver: str) -> dict[str, dict[str, Any]]:
    api = RawApi(client)
    items = api.list(RESOURCE_SLICES, what="list", field_selector=f"spec.driver={driver}")
    return {s["metadata"]["name"]: s for s in items}


def test_the_policy_is_admissionregistration_v1_and_names_the_rbac_account() -> None:
    policy, binding = _manifests("admission-policy.yaml")
    assert (policy["apiVersion"], policy["kind"]) == (
        "admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy",
    )  # fmt: skip
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}  # fmt: skip
    [account] = [d for d in _manifests("rbac.yaml") if d["kind"] == "ServiceAccount"]
    user = f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    [condition] = policy["spec"]["matchConditions"]
    assert condition["expression"] == f"request.userInfo.username == '{user}'"


def test_a_token_bound_to_the_pod_names_its_node(agent: ApiClient) -> None:
    review = RawApi(agent).request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", what="whoami",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )  # fmt: skip
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    assert user["extra"]["authentication.kubernetes.io/node-name"] == [NODE]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == [POD]


def test_the_publisher_writes_the_slices_of_its_own_node(
    agent: ApiClient, k8s_client: ApiClient, driver: str
) -> None:
    # Four slices of two GPUs: creates.
    four = {NODE: node_slices(nvtopo.system("hgx-b200"), node=NODE, driver=driver,
                              max_devices_per_slice=2)}  # fmt: skip
    result = publish(agent, four, driver=driver)
    assert (result.created, result.updated, result.deleted) == (4, 0, 0)
    # One slice of another machine: an update (generation 2) and three deletes.
    result = publish(agent, nvtopo.system("dgx-h100"), node=NODE, driver=driver)
    assert (result.created, result.updated, result.deleted) == (0, 1, 3)
    [held] = stored(k8s_client, driver).values()
    assert held["spec"]["nodeName"] == NODE and held["spec"]["pool"]["generation"] == 2
    assert publish(agent, nvtopo.system("dgx-h100"), node=NODE, driver=driver).writes == 0


def test_another_nodes_slices_are_refused(
    agent: ApiClient, k8s_client: ApiClient, driver: str
) -> None:
    name = f"{OTHER}-{driver.replace('.', '-')}-0"
    denied = _denied(name)
    # create
    status, message = _refusal(
        lambda: publish(agent, nvtopo.system("dgx-h100"), node=OTHER, driver=driver)
    )
    assert status == 403
    assert message == (
        f"create ResourceSlice {name}: 403 Forbidden: {denied}nvtopo-publisher on node {NODE} "
        f"may not create ResourceSlice {name} of node {OTHER}"
    )
    assert stored(k8s_client, driver) == {}
    # Anyone else (here the cluster admin) is not matched by the policy.
    publish(k8s_client, nvtopo.system("dgx-h100"), node=OTHER, driver=driver)
    [theirs] = stored(k8s_client, driver).values()
    api = RawApi(agent)
    path = RawApi.item(RESOURCE_SLICES, theirs["metadata"]["name"])
    # update: a full PUT, as the publisher writes
    changed = copy.deepcopy(theirs)
    changed["metadata"].setdefault("labels", {})["stolen"] = "yes"
    status, message = _refusal(lambda: api.request("PUT", path, what="update", body=changed))
    assert (status, message) == (
        403,
        f"{denied}nvtopo-publisher on node {NODE} may not update ResourceSlice {name} "
        f"of node {OTHER}",
    )
    # delete: judged by the stored slice (there is no new one)
    status, message = _refusal(lambda: api.request("DELETE", path, what="delete"))
    assert (status, message) == (
        403,
        f"{denied}nvtopo-publisher on node {NODE} may not delete ResourceSlice {name} "
        f"of node {OTHER}",
    )
    assert stored(k8s_client, driver) == {name: theirs}
    # A slice for every node is no slice of its own node either.
    everywhere = _slice(f"all-{driver.replace('.', '-')}", None, driver)
    status, message = _refusal(
        lambda: api.request("POST", RESOURCE_SLICES, what="create", body=everywhere)
    )
    assert (status, message) == (
        403,
        f"{_denied(everywhere['metadata']['name'])}nvtopo-publisher on node {NODE} may not "
        f"create ResourceSlice {everywhere['metadata']['name']} of no single node",
    )


def test_a_token_bound_to_no_pod_is_refused(
    apiserver: Any, cluster: dict[str, str], k8s_client: ApiClient, driver: str
) -> None:
    with _client(apiserver, cluster["unbound"]) as unbound:
        status, message = _refusal(
            lambda: publish(unbound, nvtopo.system("dgx-h100"), node=NODE, driver=driver)
        )
    name = f"{NODE}-{driver.replace('.', '-')}-0"
    assert (status, "\n" in message) == (403, False)
    assert message == (
        f"create ResourceSlice {name}: 403 Forbidden: {_denied(name)}"
        f"nvtopo-publisher may create ResourceSlice {name} only with a token "
        "bound to a Pod on a node (its credentials carry no authentication.kubernetes.io/node-name)"
    )
    assert stored(k8s_client, driver) == {}
