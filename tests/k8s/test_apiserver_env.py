"""The Kubernetes test environment is a real, pinned apiserver serving resource.k8s.io/v1."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .conftest import controlplane

pytestmark = pytest.mark.k8s

DRIVER = "gpu.nvidia.com"
ROOT = Path(__file__).resolve().parents[2]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _get(apiserver: Any, path: str, token: str) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(apiserver.ca_file))
    request = urllib.request.Request(
        f"{apiserver.url}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_version_is_the_pinned_release(k8s_client: ApiClient) -> None:
    pinned, _ = controlplane.pinned_versions()
    info = client.VersionApi(k8s_client).get_code()
    assert info.git_version == pinned
    assert (int(info.major), int(info.minor.rstrip("+"))) >= (1, 34)


def test_resource_v1_is_served_and_preferred(k8s_client: ApiClient) -> None:
    groups = {g.name: g for g in client.ApisApi(k8s_client).get_api_versions().groups}
    resource = groups["resource.k8s.io"]
    assert "v1" in {v.version for v in resource.versions}
    assert resource.preferred_version.version == "v1"
    api = client.ResourceV1Api(k8s_client)
    names = {r.name for r in api.get_api_resources().resources}
    assert {"resourceslices", "deviceclasses", "resourceclaims", "resourceclaimtemplates"} <= names
    assert isinstance(api.list_resource_slice().items, list)
    assert isinstance(api.list_device_class().items, list)


def _slice(name: str, node: str) -> client.V1ResourceSlice:
    attrs = {
        "index": client.V1DeviceAttribute(int=3),
        "productName": client.V1DeviceAttribute(string="NVIDIA H100 80GB HBM3"),
        "cliqueId": client.V1DeviceAttribute(string="4f1c0e2a-0000-4000-8000-000000000001.32766"),
        "driverVersion": client.V1DeviceAttribute(version="570.124.6"),
        "nvlinkCapable": client.V1DeviceAttribute(bool=True),
    }
    device = client.V1Device(
        name="gpu-3",
        attributes=attrs,
        capacity={"memory": client.V1DeviceCapacity(value="80Gi")},
    )
    return client.V1ResourceSlice(
        metadata=client.V1ObjectMeta(name=name, labels={"nvtopo.test/node": node}),
        spec=client.V1ResourceSliceSpec(
            driver=DRIVER,
            node_name=node,
            pool=client.V1ResourcePool(name=node, generation=1, resource_slice_count=1),
            devices=[device],
        ),
    )


def test_resource_slice_create_read_delete(k8s_client: ApiClient) -> None:
    api = client.ResourceV1Api(k8s_client)
    name = _name("slice")
    created = api.create_resource_slice(_slice(name, "node-a"))
    try:
        got = api.read_resource_slice(name)
        assert got.metadata.uid == created.metadata.uid
        assert got.spec.driver == DRIVER
        assert got.spec.node_name == "node-a"
        assert got.spec.pool.name == "node-a"
        assert got.spec.pool.resource_slice_count == 1
        [device] = got.spec.devices
        assert device.name == "gpu-3"
        assert device.attributes["index"].int == 3
        assert device.attributes["productName"].string == "NVIDIA H100 80GB HBM3"
        assert device.attributes["driverVersion"].version == "570.124.6"
        assert device.attributes["nvlinkCapable"].bool is True
        assert device.capacity["memory"].value == "80Gi"
        listed = api.list_resource_slice(label_selector="nvtopo.test/node=node-a").items
        assert [s.metadata.name for s in listed] == [name]
    finally:
        api.delete_resource_slice(name)
    with pytest.raises(ApiException) as err:
        api.read_resource_slice(name)
    assert err.value.status == 404


def test_resource_slice_is_validated_by_the_server(k8s_client: ApiClient) -> None:
    api = client.ResourceV1Api(k8s_client)
    bad = _slice(_name("slice"), "node-b")
    bad.spec.all_nodes = True  # nodeName and allNodes are mutually exclusive
    with pytest.raises(ApiException) as err:
        api.create_resource_slice(bad)
    assert err.value.status == 422
    assert "allNodes" in err.value.body


def test_device_class_create_read_delete(k8s_client: ApiClient) -> None:
    api = client.ResourceV1Api(k8s_client)
    name = _name("nvtopo-gpu")
    expression = f'device.driver == "{DRIVER}" && device.attributes["{DRIVER}"].index >= 0'
    body = client.V1DeviceClass(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeviceClassSpec(
            selectors=[
                client.V1DeviceSelector(cel=client.V1CELDeviceSelector(expression=expression))
            ]
        ),
    )
    api.create_device_class(body)
    try:
        got = api.read_device_class(name)
        assert got.spec.selectors[0].cel.expression == expression
        assert name in {c.metadata.name for c in api.list_device_class().items}
    finally:
        api.delete_device_class(name)


def test_device_class_cel_is_compiled_by_the_server(k8s_client: ApiClient) -> None:
    api = client.ResourceV1Api(k8s_client)
    body = client.V1DeviceClass(
        metadata=client.V1ObjectMeta(name=_name("broken")),
        spec=client.V1DeviceClassSpec(
            selectors=[
                client.V1DeviceSelector(
                    cel=client.V1CELDeviceSelector(expression="device.driver ==")
                )
            ]
        ),
    )
    with pytest.raises(ApiException) as err:
        api.create_device_class(body)
    assert err.value.status == 422


def test_a_bad_token_is_unauthorized(apiserver: Any) -> None:
    status, body = _get(apiserver, "/apis/resource.k8s.io/v1/resourceslices", "not-a-token")
    assert status == 401
    assert body["reason"] == "Unauthorized"
    status, _ = _get(apiserver, "/apis/resource.k8s.io/v1/resourceslices", apiserver.token)
    assert status == 200


def test_rbac_limits_a_service_account_until_it_is_bound(
    k8s_client: ApiClient, apiserver: Any
) -> None:
    # A ServiceAccount token proves both the signing key setup and that RBAC decides.
    core, rbac = client.CoreV1Api(k8s_client), client.RbacAuthorizationV1Api(k8s_client)
    name = _name("publisher")
    core.create_namespaced_service_account(
        "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[controlplane.SERVICE_ACCOUNT_ISSUER])
    )
    token = core.create_namespaced_service_account_token(name, "default", request).status.token
    path = "/apis/resource.k8s.io/v1/resourceslices"
    status, body = _get(apiserver, path, token)
    assert status == 403, body
    assert f"system:serviceaccount:default:{name}" in body["message"]

    rbac.create_cluster_role(
        client.V1ClusterRole(
            metadata=client.V1ObjectMeta(name=name),
            rules=[
                client.V1PolicyRule(
                    api_groups=["resource.k8s.io"], resources=["resourceslices"], verbs=["list"]
                )
            ],
        )
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace="default")],
        )
    )
    # The authorizer reads roles through an informer: wait for it to see the binding.
    deadline = time.monotonic() + 30
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, body = _get(apiserver, path, token)
    assert status == 200, body
    status, _ = _get(apiserver, "/apis/resource.k8s.io/v1/deviceclasses", token)
    assert status == 403


def test_the_script_runs_a_private_plane_in_a_state_dir(apiserver: Any, tmp_path: Path) -> None:
    # `apiserver` first: the binaries are built (or found) before the script needs them.
    script = [sys.executable, str(ROOT / "scripts" / "k8s-test-env")]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = subprocess.run([*script, "--state-dir", str(foreign), "start"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"k8s-test-env: {foreign} is not empty")
    assert (foreign / "notes.txt").read_text() == "keep me"

    state = tmp_path / "plane"
    env = {**os.environ, "NVTOPO_K8S_STATE_DIR": str(state)}
    started = subprocess.run([*script, "start"], capture_output=True, text=True, env=env,
                             timeout=180)  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout == f"export KUBECONFIG={state / 'kubeconfig'}\n"
        shown = subprocess.run([*script, "--state-dir", str(state), "env"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert shown.stdout == started.stdout
        mine = config.new_client_from_config(config_file=str(state / "kubeconfig"))
        try:
            assert client.VersionApi(mine).get_code().git_version.startswith("v1.37")
        finally:
            mine.close()
    finally:
        stopped = subprocess.run([*script, "--state-dir", str(state), "stop"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
    assert stopped.stderr == "stopped\n"
    assert not (state / "pids").exists()
