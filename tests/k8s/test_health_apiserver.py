"""Health as a scheduling signal, on the real apiserver and the real kube-scheduler (v1.37).

A GPU with NVLinks down or an unhealthy fabric is published with a device taint; the stock
scheduler keeps claims that do not tolerate it off that GPU, and gives it to one that does;
a DeviceTaintRule does the same for a device of another driver's slice (companion mode).
"""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
import nvtopo.discovery.nvml as nvml_source
from nvtopo.catalog import with_lost_nvlinks
from nvtopo.discovery.nvml import discover
from nvtopo.dra import device_classes
from nvtopo.dra.health_agent import (
    CONDITION_TYPE,
    DEVICE_TAINT_RULES,
    reconcile_node_condition,
    reconcile_taint_rules,
)
from nvtopo.dra.publish import publish
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from tests.fake_nvml import FakeNvml, load, write_sysfs

pytestmark = pytest.mark.k8s

CLAIMS = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims"
PODS = "/api/v1/namespaces/default/pods"
CLASSES = "/apis/resource.k8s.io/v1/deviceclasses"


def _uid() -> str:
    return uuid.uuid4().hex[:6]


def _devices(api: RawApi, driver: str, node: str) -> dict[str, dict[str, Any]]:
    slices = api.list(
        RESOURCE_SLICES, what="slices", field_selector=f"spec.driver={driver},spec.nodeName={node}"
    )
    return {d["name"]: d for s in slices for d in s["spec"]["devices"]}


def _ensure_class(api: RawApi, driver: str) -> str:
    [cls] = device_classes(driver=driver)
    name = cls["metadata"]["name"]
    try:
        api.request("POST", CLASSES, what=f"DeviceClass {name}", body=cls)
    except Exception as exc:  # already there from another test
        if getattr(exc, "status", None) != 409:
            raise
    return str(name)


def _schedule(
    api: RawApi, node: str, device_class: str, count: int, *, tolerate: str | None = None
) -> tuple[list[str] | None, str]:
    """Create a claim for ``count`` devices and a pod using it; the devices the real scheduler
    allocated (None when it left the pod unschedulable) and the pod name."""
    name = f"h-{_uid()}"
    request: dict[str, Any] = {"deviceClassName": device_class, "allocationMode": "ExactCount",
                               "count": count}  # fmt: skip
    if tolerate is not None:
        request["tolerations"] = [{"key": tolerate, "operator": "Exists", "effect": "NoSchedule"}]
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "gpus", "exactly": request}]}},
    }
    api.request("POST", CLAIMS, what=f"claim {name}", body=claim)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"claims": [{"name": "gpus"}]}}
            ],
            "resourceClaims": [{"name": "gpus", "resourceClaimName": name}],
        },
    }
    api.request("POST", PODS, what=f"pod {name}", body=pod)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = api.request("GET", RawApi.item(PODS, name), what=f"pod {name}")
        if got["spec"].get("nodeName"):
            c = api.request("GET", RawApi.item(CLAIMS, name), what=f"claim {name}")
            results = c["status"]["allocation"]["devices"]["results"]
            return sorted(r["device"] for r in results), name
        conds = (got.get("status") or {}).get("conditions") or []
        if any(x.get("reason") == "Unschedulable" for x in conds):
            return None, name
        time.sleep(0.2)
    raise AssertionError(f"pod {name}: neither bound nor unschedulable within 30 s")


def _cleanup(api: RawApi, names: list[str]) -> None:
    for name in names:
        api.request("DELETE", RawApi.item(PODS, name), what=name, query=[("gracePeriodSeconds", 0)])
        api.request("DELETE", RawApi.item(CLAIMS, name), what=name)


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    counter = itertools.count()

    def run(recording: str) -> nvtopo.NodeTopology:
        data = load(recording)
        root = write_sysfs(data, tmp_path / f"sys{next(counter)}")
        monkeypatch.setattr(nvml_source, "SYSFS_ROOT", root)
        return discover(nvml=FakeNvml(data), name="node")

    return run


def test_a_replayed_fabric_failure_taints_and_recovery_clears_with_one_write_each(
    k8s_client: ApiClient, replay: Any
) -> None:
    driver, node = f"h{_uid()}.nvtopo.dev", f"h-{_uid()}"
    api = RawApi(k8s_client)
    steps = ["gb200-tray", "gb200-tray-unhealthy", "gb200-tray-unhealthy", "gb200-tray"]
    writes, taints = [], []
    for recording in steps:
        result = publish(k8s_client, replay(recording), node=node, driver=driver)
        writes.append(result.writes)
        stored = _devices(api, driver, node)
        taints.append({n: [t["key"] for t in d.get("taints", [])] for n, d in stored.items()
                       if d.get("taints")})  # fmt: skip
    assert writes[1:] == [1, 0, 1]
    assert taints == [{}, {"gpu-1": ["topology.nvtopo.dev/fabric-unhealthy"]}, taints[1], {}]
    stored = _devices(api, driver, node)
    assert "timeAdded" not in str(stored) or all(
        "timeAdded" in t for d in stored.values() for t in d.get("taints", [])
    )


def test_the_real_scheduler_keeps_untolerating_claims_off_a_tainted_gpu(
    k8s_client: ApiClient, scheduler: Any, ready_nodes: Any
) -> None:
    driver, node, spare = f"s{_uid()}.nvtopo.dev", f"s-{_uid()}", f"t-{_uid()}"
    ready_nodes([node, spare])
    api = RawApi(k8s_client)
    device_class = _ensure_class(api, driver)
    b200 = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2])
    for name in (node, spare):
        publish(k8s_client, b200, node=name, driver=driver)
    pods: list[str] = []
    try:
        all_eight, name = _schedule(api, node, device_class, 8)
        pods.append(name)
        assert all_eight is None, "8 GPUs asked, one tainted: the scheduler must refuse"
        seven, name = _schedule(api, node, device_class, 7)
        pods.append(name)
        assert seven is not None and "gpu-2" not in seven
        # A node of its own: without a controller-manager, deleted pods' claims stay allocated.
        tolerant, name = _schedule(
            api, spare, device_class, 8, tolerate="topology.nvtopo.dev/nvlink-degraded"
        )
        pods.append(name)
        assert tolerant is not None and "gpu-2" in tolerant
    finally:
        _cleanup(api, pods)


def _nvidia_slice(topology: nvtopo.NodeTopology, node: str, driver: str) -> dict[str, Any]:
    """A slice as NVIDIA's driver publishes GPUs: device ``gpu-<i>`` with a ``uuid`` attribute."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {"name": f"gpu-{g.index}", "attributes": {"uuid": {"string": g.uuid}}}
                for g in topology.gpus
            ],
        },
    }


def test_a_device_taint_rule_keeps_the_scheduler_off_another_drivers_device(
    k8s_client: ApiClient, scheduler: Any, ready_nodes: Any
) -> None:
    driver, node = f"nv{_uid()}.example.com", f"c-{_uid()}"
    ready_nodes([node])
    api = RawApi(k8s_client)
    device_class = _ensure_class(api, driver)
    tray = with_lost_nvlinks(nvtopo.system("gb200-tray"), [3])
    api.request("POST", RESOURCE_SLICES, what="slice", body=_nvidia_slice(tray, node, driver))
    first = reconcile_taint_rules(api, node, tray, driver=driver)
    assert len(first.created) == 1 and first.deleted == ()
    assert reconcile_taint_rules(api, node, tray, driver=driver).writes == 0
    pods: list[str] = []
    try:
        got, name = _schedule(api, node, device_class, 3)
        pods.append(name)
        assert got == ["gpu-0", "gpu-1", "gpu-2"]
        got, name = _schedule(api, node, device_class, 1)
        pods.append(name)
        assert got is None
    finally:
        _cleanup(api, pods)
    healed = reconcile_taint_rules(api, node, nvtopo.system("gb200-tray"), driver=driver)
    assert healed.deleted == first.created
    left = api.list(DEVICE_TAINT_RULES, what="rules", label_selector=f"nvtopo.dev/node={node}")
    assert list(left) == []


def test_the_node_condition_is_written_once_and_flips_back(
    k8s_client: ApiClient, ready_nodes: Any
) -> None:
    node = f"n-{_uid()}"
    ready_nodes([node])
    api = RawApi(k8s_client)
    bad = with_lost_nvlinks(nvtopo.system("gb200-tray"), [0])
    assert reconcile_node_condition(api, node, bad) is True
    assert reconcile_node_condition(api, node, bad) is False
    obj = api.request("GET", RawApi.item("/api/v1/nodes", node), what=node)
    [cond] = [c for c in obj["status"]["conditions"] if c["type"] == CONDITION_TYPE]
    assert cond["status"] == "True" and "GPU 0: nvlink-degraded" in cond["message"]
    assert any(c["type"] == "Ready" for c in obj["status"]["conditions"])
    assert reconcile_node_condition(api, node, nvtopo.system("gb200-tray")) is True
    obj = api.request("GET", RawApi.item("/api/v1/nodes", node), what=node)
    [cond] = [c for c in obj["status"]["conditions"] if c["type"] == CONDITION_TYPE]
    assert cond["status"] == "False"


def test_a_server_with_device_taints_off_drops_them_and_republish_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A real kube-apiserver with the DRADeviceTaints gate off stores the slice without its
    taints; the digest annotation keeps the publisher from rewriting it every round."""
    from kubernetes import config

    from .conftest import controlplane
    from .restartable import RestartablePlane

    gates = "--feature-gates=DRADeviceTaints=false,DRADeviceTaintRules=false"
    plane = RestartablePlane(controlplane, tmp_path_factory.mktemp("k8s-no-taints"), (gates,))
    try:
        client = config.new_client_from_config(config_file=str(plane.plane.kubeconfig))  # type: ignore[no-untyped-call]
        b200 = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2])
        first = publish(client, b200, node="gate-off", driver="g.nvtopo.dev")
        stored = _devices(RawApi(client), "g.nvtopo.dev", "gate-off")
        assert first.writes >= 1
        assert not any(d.get("taints") for d in stored.values()), "the gate is off: dropped"
        again = publish(client, b200, node="gate-off", driver="g.nvtopo.dev")
        assert again.writes == 0
        other = with_lost_nvlinks(nvtopo.system("hgx-b200"), [3])
        assert publish(client, other, node="gate-off", driver="g.nvtopo.dev").writes == 1
        client.close()
    finally:
        plane.close()


def test_publish_companion_mirrors_the_taint_onto_nvidias_device(
    apiserver: Any,
    k8s_client: ApiClient,
    ready_nodes: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`nvtopo publish --companion`: NVIDIA's slice for the same GPUs is expected, not refused,
    and its device of the degraded GPU gets a DeviceTaintRule; without --companion the agent
    refuses to publish GPUs another driver publishes."""
    import json

    from nvtopo.cli import main
    from nvtopo.formats.jsonio import node_to_json

    node = f"cm-{_uid()}"
    ready_nodes([node])
    api = RawApi(k8s_client)
    tray = with_lost_nvlinks(nvtopo.system("gb200-tray"), [2])
    path = tmp_path / "tray.json"
    path.write_text(json.dumps(node_to_json(tray)))
    nvidia = _nvidia_slice(tray, node, "gpu.nvidia.com")
    api.request("POST", RESOURCE_SLICES, what="slice", body=nvidia)
    base = ["publish", "--source", f"file:{path}", "--node", node, "--driver",
            f"cm{_uid()}.nvtopo.dev", "--once", "--format", "json",
            "--kubeconfig", str(apiserver.kubeconfig)]  # fmt: skip
    try:
        assert main(base) == 1
        err = capsys.readouterr().err
        assert "gpu.nvidia.com" in err and len(err.strip().splitlines()) == 1
        assert main([*base, "--companion"]) == 0
        capsys.readouterr()
        rules = list(
            api.list(DEVICE_TAINT_RULES, what="rules", label_selector=f"nvtopo.dev/node={node}")
        )
        assert [r["spec"]["deviceSelector"] for r in rules] == [
            {"driver": "gpu.nvidia.com", "pool": node, "device": "gpu-2"}
        ]
    finally:
        for r in api.list(
            DEVICE_TAINT_RULES, what="rules", label_selector=f"nvtopo.dev/node={node}"
        ):
            api.request("DELETE", RawApi.item(DEVICE_TAINT_RULES, r["metadata"]["name"]), what="r")
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, nvidia["metadata"]["name"]), what="s")
