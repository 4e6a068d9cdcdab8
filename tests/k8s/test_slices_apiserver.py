"""nvtopo's DRA manifests on a real kube-apiserver: accepted as built, stored unchanged, and
refused by the server exactly where nvtopo's own limit checks refuse them."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo import dra
from nvtopo.dra import limits

pytestmark = pytest.mark.k8s

NODE_SYSTEMS = [s.name for s in nvtopo.systems() if s.kind == "node"]


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


@pytest.fixture
def slices_api(k8s_client: ApiClient) -> Iterator[client.ResourceV1Api]:
    """The resource.k8s.io/v1 API; every slice a test creates is deleted after it."""
    api = client.ResourceV1Api(k8s_client)
    created: list[str] = []
    original = api.create_resource_slice

    def create(body: Any, **kwargs: Any) -> Any:
        out = original(body=body, **kwargs)
        created.append(body["metadata"]["name"])
        return out

    api.create_resource_slice = create  # type: ignore[method-assign]
    try:
        yield api
    finally:
        for name in created:
            try:
                api.delete_resource_slice(name)
            except ApiException as exc:  # pragma: no cover - only when a test deleted it
                if exc.status != 404:
                    raise


@pytest.mark.parametrize("name", NODE_SYSTEMS)
def test_catalog_slices_are_accepted_and_stored_unchanged(
    slices_api: client.ResourceV1Api, name: str
) -> None:
    topo = nvtopo.system(name)
    node = f"{name}-{_suffix()}"
    manifests = dra.resource_slices(topo, node=node) + dra.resource_slices(
        topo, node=f"{node}-split", max_devices_per_slice=3
    )
    for m in manifests:
        slices_api.create_resource_slice(body=m)
    for m in manifests:
        stored = _raw(slices_api.read_resource_slice(m["metadata"]["name"], _preload_content=False))
        # Quantities and versions come back as sent: republishing can compare specs as they are.
        assert stored["spec"] == m["spec"]


def test_a_cluster_of_two_racks_is_accepted(slices_api: client.ResourceV1Api) -> None:
    driver = f"gpu-{_suffix()}.nvtopo.dev"  # its own driver keeps these slices apart
    manifests = dra.cluster_resource_slices(nvtopo.cluster("gb200-nvl72x2"), driver=driver)
    for m in manifests:
        slices_api.create_resource_slice(body=m)
    listed = slices_api.list_resource_slice(field_selector=f"spec.driver={driver}").items
    assert len(listed) == 36
    assert len({s.spec.pool.name for s in listed}) == 36


def _with_long_product_name(m: dict[str, Any], size: int) -> None:
    m["spec"]["devices"][0]["attributes"]["productName"] = {"string": "x" * size}


def _with_attributes(m: dict[str, Any], count: int) -> None:
    attrs = m["spec"]["devices"][0]["attributes"]
    attrs.clear()
    attrs.update({f"a{i}": {"int": i} for i in range(count - 1)})  # + memory capacity


def _with_devices(m: dict[str, Any], count: int) -> None:
    first = m["spec"]["devices"][0]
    m["spec"]["devices"] = [{**copy.deepcopy(first), "name": f"gpu-{i}"} for i in range(count)]


def _with_id_length(m: dict[str, Any], size: int) -> None:
    m["spec"]["devices"][0]["attributes"]["topology.nvtopo.dev/" + "x" * size] = {"int": 1}


def _with_version(m: dict[str, Any], text: str) -> None:
    m["spec"]["devices"][0]["attributes"]["driverVersion"] = {"version": text}


# (what, change at the limit: accepted, change past it: refused)
LIMITS: list[tuple[str, Callable[[dict[str, Any]], None], Callable[[dict[str, Any]], None]]] = [
    (
        "string length",
        lambda m: _with_long_product_name(m, 64),
        lambda m: _with_long_product_name(m, 65),
    ),
    ("attributes", lambda m: _with_attributes(m, 32), lambda m: _with_attributes(m, 33)),
    ("devices", lambda m: _with_devices(m, 128), lambda m: _with_devices(m, 129)),
    ("name length", lambda m: _with_id_length(m, 32), lambda m: _with_id_length(m, 33)),
    ("semver", lambda m: _with_version(m, "570.124.6"), lambda m: _with_version(m, "570.124")),
]


@pytest.mark.parametrize(("what", "at_limit", "past_limit"), LIMITS, ids=[x[0] for x in LIMITS])
def test_nvtopo_limits_match_the_server(
    slices_api: client.ResourceV1Api,
    what: str,
    at_limit: Callable[[dict[str, Any]], None],
    past_limit: Callable[[dict[str, Any]], None],
) -> None:
    [base] = dra.resource_slices(nvtopo.system("dgx-h100"), node=f"limits-{_suffix()}")
    good, bad = copy.deepcopy(base), copy.deepcopy(base)
    at_limit(good)
    past_limit(bad)
    bad["metadata"]["name"] += "-bad"
    limits.check_resource_slice(good)
    slices_api.create_resource_slice(body=good)
    with pytest.raises(limits.DraLimitError):
        limits.check_resource_slice(bad)
    with pytest.raises(ApiException) as err:
        slices_api.create_resource_slice(body=bad)
    assert err.value.status == 422, what


def test_device_classes_and_claim_templates_are_accepted(k8s_client: ApiClient) -> None:
    api = client.ResourceV1Api(k8s_client)
    driver = f"gpu-{_suffix()}.nvtopo.dev"
    [cls] = dra.device_classes(driver)
    api.create_device_class(body=cls)
    names = []
    try:
        for k in range(1, 33):
            t = dra.claim_template(gpus=k, name=f"gpus-{k}-{_suffix()}", driver=driver)
            api.create_namespaced_resource_claim_template(namespace="default", body=t)
            names.append(t["metadata"]["name"])
            stored = _raw(
                api.read_namespaced_resource_claim_template(
                    t["metadata"]["name"], "default", _preload_content=False
                )
            )
            assert stored["spec"]["spec"]["devices"] == t["spec"]["spec"]["devices"]
    finally:
        for n in names:
            api.delete_namespaced_resource_claim_template(n, "default")
        api.delete_device_class(cls["metadata"]["name"])
