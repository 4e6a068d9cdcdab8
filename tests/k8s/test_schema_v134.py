"""What nvtopo writes stays valid for Kubernetes v1.34, the first release with
``resource.k8s.io/v1``, while the test control plane runs a newer one.

Checked strictly (no field v1.34 lacks) against the OpenAPI v3 documents shipped in the
``k8s.io/kubernetes`` v1.34 module, fetched through the Go module proxy into the shared cache.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import nvtopo
from nvtopo import dra

from .conftest import controlplane
from .openapi_check import Schemas, problems

pytestmark = pytest.mark.k8s

V1 = "io.k8s.api.resource.v1."


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    try:
        path = controlplane.openapi_spec("resource.k8s.io/v1")
    except controlplane.ControlPlaneError as exc:
        pytest.fail(f"cannot fetch the v1.34 OpenAPI document: {exc}", pytrace=False)
    return Schemas(path)


def test_the_check_refuses_a_field_v134_lacks(schemas: Schemas) -> None:
    [s] = dra.resource_slices(nvtopo.system("dgx-h100"), node="n1")
    assert problems(schemas, s, V1 + "ResourceSlice") == []
    bad = copy.deepcopy(s)
    bad["spec"]["devices"][0]["notAField"] = True
    bad["spec"]["devices"][1]["attributes"]["index"] = {"int": "seven"}
    found = problems(schemas, bad, V1 + "ResourceSlice")
    assert any("unknown field 'notAField'" in p for p in found)
    assert any("attributes['index'].int" in p for p in found)


@pytest.mark.parametrize("system", ["dgx1-v100", "dgx2-v100", "gb200-tray", "pcie-8x-l40s"])
def test_slices_are_valid_on_v134(schemas: Schemas, system: str) -> None:
    for s in dra.resource_slices(nvtopo.system(system), node="node-1"):
        assert problems(schemas, s, V1 + "ResourceSlice") == []


def test_classes_and_claim_templates_are_valid_on_v134(schemas: Schemas) -> None:
    for c in dra.device_classes():
        assert problems(schemas, c, V1 + "DeviceClass") == []
    for k in (1, 2, 4, 8, 3):
        t: dict[str, Any] = dra.claim_template(gpus=k, name=f"t{k}")
        assert problems(schemas, t, V1 + "ResourceClaimTemplate") == []


def test_allocator_claim_status_is_valid_on_v134(schemas: Schemas) -> None:
    from nvtopo.allocator.plan import allocation_result

    exactly = {"deviceClassName": "gpu.nvtopo.dev", "allocationMode": "ExactCount", "count": 2}
    results = tuple(("gpus", "gpu.nvtopo.dev", "node-1", f"gpu-{i}") for i in range(2))
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}},
        "status": {"allocation": allocation_result("node-1", results)},
    }
    assert problems(schemas, claim, V1 + "ResourceClaim") == []
