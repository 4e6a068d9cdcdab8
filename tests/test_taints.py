"""Health as a scheduling signal: device taints in slices, DeviceTaintRules for NVIDIA's
devices, and the capacity placement counts (DESIGN, "Health as a scheduling signal")."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest

import nvtopo
import nvtopo.discovery.nvml as nvml_source
from nvtopo import Cluster, ClusterNode, InfeasibleError, PlacementRequest, place
from nvtopo.catalog import with_lost_nvlinks
from nvtopo.discovery.nvml import discover
from nvtopo.dra import resource_slices
from nvtopo.dra._plan import slice_difference
from nvtopo.dra.taints import devices_by_uuid, taint_rules
from nvtopo.model import Fabric, Gpu, NodeTopology, NvLink
from nvtopo.model.gpu_health import gpu_findings
from tests.fake_nvml import FakeNvml, load, write_sysfs

NVLINK = "topology.nvtopo.dev/nvlink-degraded"
FABRIC = "topology.nvtopo.dev/fabric-unhealthy"


def _taints(slices: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    return {d["name"]: d["taints"] for s in slices for d in s["spec"]["devices"] if d.get("taints")}


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    counter = itertools.count()

    def run(data: dict[str, Any]) -> NodeTopology:
        root = write_sysfs(data, tmp_path / f"sys{next(counter)}")
        monkeypatch.setattr(nvml_source, "SYSFS_ROOT", root)
        return discover(nvml=FakeNvml(data), name="node")

    return run


def test_a_gpu_that_lost_its_nvlinks_keeps_its_device_with_a_taint() -> None:
    b200 = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2])
    slices = resource_slices(b200, node="n1")
    assert len([d for s in slices for d in s["spec"]["devices"]]) == 8
    assert _taints(slices) == {
        "gpu-2": [{"key": NVLINK, "value": "18-of-18-nvlinks-down", "effect": "NoSchedule"}]
    }
    assert _taints(resource_slices(nvtopo.system("hgx-b200"), node="n1")) == {}
    assert _taints(resource_slices(b200, node="n1", taint_effect=None)) == {}
    [taint] = _taints(resource_slices(b200, node="n1", taint_effect="NoExecute"))["gpu-2"]
    assert taint["effect"] == "NoExecute"


def test_replayed_nvml_link_down_health_unhealthy_and_recovery(replay: Any) -> None:
    """Fake NVML replays: a link goes down, a fabric turns unhealthy, both recover."""
    assert _taints(resource_slices(replay(load("gb200-tray")), node="n")) == {}
    unhealthy = _taints(resource_slices(replay(load("gb200-tray-unhealthy")), node="n"))
    assert unhealthy == {
        "gpu-1": [
            {"key": FABRIC, "value": "fabric-health-unhealthy-mask-0x19a", "effect": "NoSchedule"}
        ]
    }
    links = _taints(resource_slices(replay(load("dgx1-v100-link-down")), node="n"))
    assert {name: [t["value"] for t in ts] for name, ts in links.items()} == {
        "gpu-0": ["nvlink-3-down"],
        "gpu-3": ["nvlink-1-down"],
    }
    assert _taints(resource_slices(replay(load("gb200-tray")), node="n")) == {}


def test_a_degraded_fabric_health_is_a_finding_and_unknown_is_not() -> None:
    def gpu(health: str) -> Gpu:
        fabric = Fabric(cluster_uuid="c" * 8, clique_id=1, state="completed", health=health)  # type: ignore[arg-type]
        return Gpu(0, fabric=fabric)

    assert [f.kind for f in gpu_findings(gpu("degraded"))] == ["fabric-unhealthy"]
    assert gpu_findings(gpu("unknown")) == gpu_findings(gpu("healthy")) == ()
    degraded = Gpu(0, nvlinks=(NvLink(0, state="degraded"), NvLink(1), NvLink(2, state="down")))
    assert [f.reason for f in gpu_findings(degraded)] == ["nvlink-2-down-nvlink-0-degraded"]


def test_every_taint_value_is_a_label_value() -> None:
    many = Gpu(0, nvlinks=tuple(NvLink(i, state="down") for i in range(18)))
    [finding] = gpu_findings(many)
    assert finding.reason == "18-of-18-nvlinks-down"
    assert len(finding.reason) <= 63


def test_a_pool_with_tainted_devices_holds_at_most_64_per_slice() -> None:
    gpus = [Gpu(i, uuid=f"GPU-{i:04d}") for i in range(100)]
    gpus[7] = dataclasses.replace(gpus[7], nvlinks=(NvLink(0, state="down"),))
    slices = resource_slices(NodeTopology(gpus=tuple(gpus)), node="big")
    assert [len(s["spec"]["devices"]) for s in slices] == [64, 36]
    healthy = resource_slices(NodeTopology(gpus=tuple(Gpu(i) for i in range(100))), node="big")
    assert [len(s["spec"]["devices"]) for s in healthy] == [100]


def test_the_time_the_server_stamps_on_a_taint_is_no_change() -> None:
    [desired] = resource_slices(with_lost_nvlinks(nvtopo.system("hgx-b200"), [2]), node="n1")
    stored = copy.deepcopy(desired)
    for d in stored["spec"]["devices"]:
        for t in d.get("taints", []):
            t["timeAdded"] = "2026-12-01T10:00:00Z"
    assert slice_difference(desired, stored) is None
    for d in stored["spec"]["devices"]:
        d.pop("taints", None)
    del stored["metadata"]["annotations"]
    assert slice_difference(desired, stored) == "spec changed"


def test_companion_mode_rules_select_nvidias_device_by_uuid() -> None:
    topo = with_lost_nvlinks(nvtopo.system("hgx-b200"), [2, 5])
    nvidia_slice = {
        "spec": {
            "driver": "gpu.nvidia.com",
            "pool": {"name": "n1"},
            "devices": [
                {"name": f"gpu-{g.index}", "attributes": {"uuid": {"string": g.uuid}}}
                for g in topo.gpus
                if g.index != 5  # a GPU the other driver does not publish gets no rule
            ],
        }
    }
    names = devices_by_uuid([nvidia_slice], driver="gpu.nvidia.com", pool="n1")
    rules = taint_rules(topo, node="n1", devices_by_uuid=names)
    assert [r["spec"]["deviceSelector"] for r in rules] == [
        {"driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-2"}
    ]
    assert rules[0]["kind"] == "DeviceTaintRule"
    assert rules[0]["apiVersion"] == "resource.k8s.io/v1"
    assert rules[0]["metadata"]["labels"]["nvtopo.dev/node"] == "n1"
    assert devices_by_uuid([nvidia_slice], driver="gpu.nvidia.com", pool="other") == {}


def _tray_with_links_down(tray: NodeTopology, gpu: int) -> NodeTopology:
    return with_lost_nvlinks(tray, [gpu])


def test_a_clique_with_two_tainted_gpus_offers_two_gpus_less() -> None:
    racks = nvtopo.cluster("gb200-nvl72x2")
    (first, _second) = racks.cliques
    trays = racks.cliques[first]
    bad = {trays[0]: 1, trays[1]: 3}
    nodes = tuple(
        dataclasses.replace(n, topology=_tray_with_links_down(n.topology, bad[n.name]))
        if n.name in bad
        else n
        for n in racks.nodes
    )
    cluster = Cluster(nodes)

    def capacity(c: Cluster, clique: str) -> int:
        return sum(len(c.node(n).free) for n in c.cliques[clique])

    assert capacity(racks, first) - capacity(cluster, first) == 2
    whole = PlacementRequest(72, 18, "required")
    assert set(place(racks, whole).cliques) == {first}
    moved = place(cluster, whole)
    assert set(moved.cliques) != {first}
    assert not {n.name for n in moved.nodes} & set(bad)
    both_racks = PlacementRequest(144, 36, "none")
    with pytest.raises(InfeasibleError):
        place(cluster, both_racks)


def test_a_single_tainted_gpu_is_left_out_of_a_node_request() -> None:
    tray = _tray_with_links_down(nvtopo.system("gb200-tray"), 0)
    node = ClusterNode("t0", tray)
    assert node.free == (1, 2, 3)
    p = place(Cluster((node,)), PlacementRequest(3, 1, "none"))
    assert [n.gpus for n in p.nodes] == [(1, 2, 3)]


def _degraded_tray_file(tmp_path: Path) -> str:
    import json

    from nvtopo.formats.jsonio import node_to_json

    path = tmp_path / "tray.json"
    path.write_text(json.dumps(node_to_json(with_lost_nvlinks(nvtopo.system("gb200-tray"), [1]))))
    return f"file:{path}"


def test_dump_and_doctor_say_why_a_gpu_is_tainted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from nvtopo.cli import main

    source = _degraded_tray_file(tmp_path)
    assert main(["dump", "--source", source]) == 0
    out = capsys.readouterr().out
    assert (
        "GPU 1: nvlink-degraded (NVLinks 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "
        "16, 17 down): "
        f"taint {NVLINK}=18-of-18-nvlinks-down" in out
    )
    assert main(["dump", "--source", "system:gb200-tray"]) == 0
    assert "Health" not in capsys.readouterr().out
    assert main(["doctor", "--source", source, "--channels-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if "carries the taint" in line]
    assert lines == [
        f"warning: GPU 1: nvlink-degraded (NVLinks 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, "
        "14, 15, 16, 17 down): its device carries the taint "
        f"{NVLINK}=18-of-18-nvlinks-down (NoSchedule) -> the scheduler gives this GPU only to "
        "claims that tolerate the taint; nvtopo publish lifts it once the GPU recovers"
    ]


def test_a_server_that_drops_taints_costs_one_write_not_one_per_round() -> None:
    """Device taints off (the DRADeviceTaints gate before 1.36): the server stores the slice
    without them. The digest annotation shows nvtopo already sent exactly these taints."""
    b200 = nvtopo.system("hgx-b200")
    [desired] = resource_slices(with_lost_nvlinks(b200, [2]), node="n1")
    assert "topology.nvtopo.dev/taints" in desired["metadata"]["annotations"]
    stored = copy.deepcopy(desired)
    for d in stored["spec"]["devices"]:
        d.pop("taints", None)
    assert slice_difference(desired, stored) is None
    [other] = resource_slices(with_lost_nvlinks(b200, [3]), node="n1")
    assert slice_difference(other, stored) is not None
    unannotated = copy.deepcopy(stored)
    del unannotated["metadata"]["annotations"]
    assert slice_difference(desired, unannotated) == "spec changed"
    [healed] = resource_slices(b200, node="n1")
    assert "annotations" not in healed["metadata"]
    assert slice_difference(healed, stored) is not None
