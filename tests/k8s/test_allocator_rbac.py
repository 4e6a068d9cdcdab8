"""``deploy/allocator.yaml``'s ClusterRole is enough for the allocator and no more: with a
token of its ServiceAccount the allocator places a gang (claims, gates, events, the journal)
and a refused gang gets its condition, while writes outside the role are forbidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo.allocator import CONDITION, Allocator
from nvtopo.kube.client import RESOURCE_SLICES, RawApi

from .allocator_env import Env, make_env

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
PATHS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def _apply_rbac(api: RawApi) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "allocator.yaml").read_text()) if d]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nvtopo"}}
    for doc in [namespace, *docs]:
        if doc["kind"] not in PATHS:
            continue
        path = PATHS[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
        try:
            api.request("POST", path, what=doc["kind"], body=doc)
        except ApiException as exc:
            if exc.status != 409:
                raise


def _client_as_allocator(api: RawApi, apiserver: Any) -> ApiClient:
    answer = api.request(
        "POST",
        "/api/v1/namespaces/nvtopo/serviceaccounts/nvtopo-allocator/token",
        what="token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = kube.Configuration()
    config.host = apiserver.url
    config.ssl_ca_cert = str(apiserver.ca_file)
    config.api_key = {"authorization": f"Bearer {answer['status']['token']}"}
    return ApiClient(config)


def test_the_allocator_works_with_its_role_and_only_it(
    apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any
) -> None:
    admin = RawApi(k8s_client)
    _apply_rbac(admin)
    env: Env = make_env(admin, apiserver)
    env.publish(nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:3]))
    env.template("four", 4)
    fits = env.gang("fits", 2, "four")
    env.gang("too-big", 4, "four")
    from .allocator_env import wait_for

    wait_for("claims", lambda: all(env.claim_of(p) for p in env.pods()))
    restricted = _client_as_allocator(admin, apiserver)
    try:
        worker = Allocator(restricted, driver=env.driver, topology_driver=env.driver)
        result = worker.run_once()
        # The allocator sees the whole cluster: gated pods other tests left behind may be
        # handled in the same pass; only this namespace's gangs are checked.
        assert [k for k in result.placed if k.startswith(env.namespace)] == [
            f"{env.namespace}/fits"
        ], result
        assert f"{env.namespace}/too-big" in result.refused
        env.bound(fits)
        refused = env.pods(["too-big-0"])[0]
        assert any(c["type"] == CONDITION for c in refused["status"]["conditions"])
        mine = RawApi(restricted)
        for method, path, body in (
            ("DELETE", f"/api/v1/namespaces/{env.namespace}/pods/fits-0", None),
            ("POST", RESOURCE_SLICES, {"metadata": {"name": "x"}}),
            ("GET", "/api/v1/namespaces/kube-system/secrets", None),
        ):
            with pytest.raises(ApiException) as info:
                mine.request(method, path, what="outside the role", body=body)
            assert info.value.status == 403, (method, path)
    finally:
        restricted.close()
