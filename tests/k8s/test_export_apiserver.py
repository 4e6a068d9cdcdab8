"""The exports through a real apiserver, and ``--source kube`` read back from it.

- Kueue's ``Topology`` and Volcano's ``HyperNode`` against the CRDs ``controller-gen``
  generates from Kueue's and Volcano's own Go types (``tests/export/build.py``), applied with
  ``fieldValidation=Strict``;
- KAI's ``Topology`` against a CRD written in ``tests/export/crds/`` from its published API
  (KAI's Go module is not served here, so this is the weaker check: it proves the objects
  match what we read of KAI's API, not what KAI's code accepts);
- the label objects, server-side applied to Node objects;
- ``nvtopo export|place|compute-domain plan --source kube`` on a cluster published as
  ResourceSlices: the same answers as from the catalog cluster it came from.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo.cli import main
from nvtopo.dra.publish import publish
from nvtopo.export import TARGETS, export, slurm_topology_yaml
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from tests.export.build import kueue_crds, volcano_crds

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
HAND_MADE = Path(__file__).resolve().parents[1] / "export" / "crds"
PLURAL = {
    ("kueue.x-k8s.io/v1beta2", "Topology"): "topologies",
    ("kai.scheduler/v1alpha1", "Topology"): "topologies",
    ("topology.volcano.sh/v1alpha1", "HyperNode"): "hypernodes",
    ("v1", "Node"): "nodes",
}
CLUSTER = nvtopo.cluster("gb200-nvl72x4")


def _install(raw: RawApi, crd: dict[str, Any]) -> None:
    try:
        raw.request("POST", CRDS, what="create CRD", body=crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = raw.request("GET", RawApi.item(CRDS, crd["metadata"]["name"]), what="get CRD")
        conditions = (got.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {crd['metadata']['name']} not established")


@pytest.fixture(scope="module")
def crds(k8s_client: ApiClient) -> None:
    raw = RawApi(k8s_client)
    generated = [
        kueue_crds() / "kueue.x-k8s.io_topologies.yaml",
        volcano_crds() / "topology.volcano.sh_hypernodes.yaml",
        *sorted(HAND_MADE.glob("*.yaml")),
    ]
    for crd in (yaml.safe_load(p.read_text()) for p in generated):
        _install(raw, crd)


def _path(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    return f"{base}/{PLURAL[(api, obj['kind'])]}/{obj['metadata']['name']}"


def apply(raw: RawApi, obj: dict[str, Any], manager: str = "nvtopo-test") -> dict[str, Any]:
    """Server-side apply with strict field validation: an unknown field is an error."""
    client = raw.client
    request = client.param_serialize(
        method="PATCH",
        resource_path=_path(obj),
        query_params=[("fieldManager", manager), ("fieldValidation", "Strict"), ("force", "true")],
        header_params={
            "Accept": "application/json",
            "Content-Type": "application/apply-patch+yaml",
        },
        body=json.dumps(obj),
        auth_settings=["BearerToken"],
    )
    for _ in range(50):  # a CRD's endpoint can answer 404 for a moment after Established
        response = client.call_api(*request)
        data = response.read()
        if response.status != 404 or obj["kind"] == "Node":
            break
        time.sleep(0.2)
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response)
    result: dict[str, Any] = json.loads(data)
    return result


@pytest.mark.parametrize("target", ["kueue", "kai", "volcano"])
def test_objects_round_trip_through_the_apiserver(
    k8s_client: ApiClient, crds: None, target: str
) -> None:
    raw = RawApi(k8s_client)
    objects = export(CLUSTER, target)
    for obj in objects:
        stored = apply(raw, obj)
        assert stored["spec"] == obj["spec"], obj["metadata"]["name"]
        assert stored["metadata"]["labels"] == obj["metadata"]["labels"]
    for obj in objects:
        raw.request("DELETE", _path(obj), what="cleanup")


def two_selectors(member: dict[str, Any]) -> None:
    member["selector"]["regexMatch"] = {"pattern": "."}


@pytest.mark.parametrize(
    ("target", "spoil", "says"),
    [
        ("kai", lambda o: o["spec"]["levels"].reverse(), "lowest level"),
        ("kueue", lambda o: o["spec"]["levels"].append(o["spec"]["levels"][0]), "unique"),
        # (server-side apply refuses a field its typed schema lacks with a 500 of its own)
        ("kueue", lambda o: o["spec"].update(extra=1), ".spec.extra: field not declared"),
        ("volcano", lambda o: o["spec"].update(tier="1"), "tier"),
        ("volcano", lambda o: two_selectors(o["spec"]["members"][0]), "Only one of"),
    ],
)  # fmt: skip
def test_the_crds_refuse_what_the_api_forbids(
    k8s_client: ApiClient, crds: None, target: str, spoil: Any, says: str
) -> None:
    obj = export(CLUSTER, target)[0]
    obj["metadata"]["name"] = f"bad-{uuid.uuid4().hex[:6]}"
    spoil(obj)
    with pytest.raises(ApiException) as caught:
        apply(RawApi(k8s_client), obj)
    assert caught.value.status in (400, 422, 500) and says in str(caught.value.body)


def test_label_objects_apply_to_nodes(k8s_client: ApiClient) -> None:
    raw = RawApi(k8s_client)
    prefix = f"ex{uuid.uuid4().hex[:4]}-"  # other tests of the session make catalog nodes too
    objects = export(CLUSTER, "labels")[:3]
    for obj in objects:
        obj["metadata"]["name"] = prefix + obj["metadata"]["name"]
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": obj["metadata"]["name"]}}
        raw.request("POST", "/api/v1/nodes", what="node", body=node)
    try:
        for obj in objects:
            stored = apply(raw, obj)
            assert obj["metadata"]["labels"].items() <= stored["metadata"]["labels"].items()
    finally:
        for obj in objects:
            raw.request("DELETE", _path(obj), what="cleanup")


# ---- --source kube ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(k8s_client: ApiClient, apiserver: Any) -> Iterator[str]:
    """gb200-nvl72x4 published as ResourceSlices under a driver of its own."""
    driver = f"ex{uuid.uuid4().hex[:6]}.nvtopo.dev"
    publish(k8s_client, CLUSTER, driver=driver)
    yield driver
    raw = RawApi(k8s_client)
    for s in raw.list(RESOURCE_SLICES, what="cleanup", field_selector=f"spec.driver={driver}"):
        raw.request("DELETE", RawApi.item(RESOURCE_SLICES, s["metadata"]["name"]), what="cleanup")


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("target", TARGETS)
def test_export_from_kube_equals_export_from_the_catalog(
    published: str,
    apiserver: Any,
    target: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NVTOPO_DRIVER", published)
    kube = f"kube:{apiserver.kubeconfig}"
    code, out, err = _cli(["export", "--to", target, "--source", kube, "-o", "json"], capsys)
    assert (code, err) == (0, "")
    code, want, _ = _cli(
        ["export", "--to", target, "-s", "system:gb200-nvl72x4", "-o", "json"], capsys
    )
    assert code == 0 and json.loads(out) == json.loads(want)
    if target == "slurm":
        code, text, _ = _cli(["export", "--to", "slurm", "--source", kube], capsys)
        assert code == 0 and text == slurm_topology_yaml(CLUSTER)


def test_place_and_plan_from_kube(
    published: str,
    apiserver: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NVTOPO_DRIVER", published)
    for args in (
        ["place", "--gpus", "16", "--nodes", "4", "--domain", "required", "--format", "json"],
        [
            "compute-domain",
            "plan",
            "--name",
            "job",
            "--gpus",
            "8",
            "--nodes",
            "2",
            "--format",
            "json",
        ],
    ):
        code, got, err = _cli([*args, "--source", f"kube:{apiserver.kubeconfig}"], capsys)
        assert code == 0, err
        code, want, want_err = _cli([*args, "--source", "system:gb200-nvl72x4"], capsys)
        assert code == 0 and json.loads(got) == json.loads(want) and err == want_err


def test_kube_source_errors_are_one_line(
    apiserver: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NVTOPO_DRIVER", f"none{uuid.uuid4().hex[:6]}.nvtopo.dev")
    code, _, err = _cli(["export", "--to", "kueue", "-s", f"kube:{apiserver.kubeconfig}"], capsys)
    assert code == 1 and err.count("\n") == 1 and "has no ResourceSlices of none" in err
    code, _, err = _cli(["export", "--to", "kueue", "-s", f"kube:{tmp_path / 'nope'}"], capsys)
    assert code == 1 and err.count("\n") == 1 and "no such file" in err
