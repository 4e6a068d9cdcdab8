"""Live discovery through NVML, on recorded machines replayed by ``tests/fake_nvml.py``."""

from __future__ import annotations

import copy
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nvtopo
import nvtopo.discovery.nvml as nvml_source
from nvtopo import DiscoveryError, NodeTopology
from nvtopo.discovery._nvml_decode import (
    bits_of,
    fabric_health,
    normalize_bus_id,
    nvlink_generation,
    text_field,
    uuid_from_bytes,
)
from nvtopo.discovery.nvml import discover
from nvtopo.formats._cpulist import expand_cpulist
from tests.fake_nvml import FakeNvml, load, recorder, write_sysfs

Replay = Callable[..., tuple[NodeTopology, FakeNvml]]
NO_DRIVER = (
    "NVML: no NVIDIA driver found (libnvidia-ml.so.1 not loadable); "
    "use --source system:NAME or smi-topo:PATH to work without a GPU"
)
NO_KERNEL_DRIVER = NO_DRIVER.replace(
    "libnvidia-ml.so.1 not loadable", "the kernel driver is not loaded"
)
GB200_CLIQUE = "3f1c8a52-7d4e-4b91-a6c2-5e8d0b9f7a13.32766"
# NVLinks per GPU pair of the DGX-1's hybrid cube-mesh; the recording has one 0–3 link down.
DGX1_NV = {
    (0, 1): 1, (0, 2): 1, (0, 3): 1, (0, 4): 2, (1, 2): 2, (1, 3): 1, (1, 5): 2, (2, 3): 2,
    (2, 6): 1, (3, 7): 1, (4, 5): 1, (4, 6): 1, (4, 7): 2, (5, 6): 2, (5, 7): 1, (6, 7): 2,
}  # fmt: skip


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Replay:
    """Discover a recorded machine, its sysfs facts laid out under a temporary root."""
    counter = itertools.count()

    def run(recording: str | dict[str, Any]) -> tuple[NodeTopology, FakeNvml]:
        data = load(recording) if isinstance(recording, str) else recording
        root = write_sysfs(data, tmp_path / f"sys{next(counter)}")
        monkeypatch.setattr(nvml_source, "SYSFS_ROOT", root)
        fake = FakeNvml(data)
        return discover(nvml=fake, name="node"), fake

    return run


# -- one machine each -------------------------------------------------------------------------


def test_h200_vm_capture(replay: Replay) -> None:
    topo, fake = replay("h200-vm")
    (gpu,) = topo.gpus
    assert (gpu.index, gpu.uuid, gpu.name) == (
        0,
        "GPU-46861a32-c845-a369-1d11-71f6ba8ef477",
        "NVIDIA H200",
    )
    assert (gpu.brand, gpu.architecture, gpu.compute_capability) == ("Nvidia", "Hopper", "9.0")
    assert gpu.memory_mib == 143771  # what nvidia-smi prints for this GPU
    assert (gpu.pci_bus_id, gpu.pcie_root, gpu.minor) == ("0000:00:06.0", "pci0000:00", 0)
    # NVML has no NUMA node id here and sysfs says -1: unknown, while affinity still answers.
    assert (gpu.numa_node, gpu.numa_affinity, gpu.cpu_affinity) == (None, (0,), "0-15")
    assert gpu.mig_mode is False
    assert (gpu.nvlinks, gpu.nvlink_generation) == ((), None)
    assert gpu.fabric is not None
    assert (gpu.fabric.state, gpu.fabric.status, gpu.fabric.health) == (
        "not_supported",
        "success",
        "unknown",
    )
    assert gpu.fabric.cluster_uuid == "00000000-0000-0000-0000-000000000000"
    assert gpu.platform == nvtopo.Platform(None, slot=0, tray=0, host_id=1, module_id=1)
    assert (topo.clique, topo.pairs, topo.nvswitches) == (None, (), ())
    assert (topo.driver_version, topo.cuda_version, topo.name) == ("580.159.04", "13.0", "node")
    assert topo.numa_cpus == {0: "0-15"}
    assert (fake.init_calls, fake.shutdown_calls, fake.initialized) == (1, 1, False)


def test_dgx_h100_nvswitch_node(replay: Replay) -> None:
    topo, _ = replay("dgx-h100")
    assert topo.gpu_indices == tuple(range(8))
    assert all(g.gpu_numa_id is None for g in topo.gpus)  # PCIe GPUs: memory is no NUMA node
    assert len(topo.pairs) == 28
    for p in topo.pairs:
        assert (p.nvlinks, p.via_nvswitch, p.nvlinks_down) == (18, True, 0)
        assert p.pcie == ("NODE" if (p.a < 4) == (p.b < 4) else "SYS")
    assert topo.path_class(0, 7) == "NV18"
    assert topo.pair_bandwidth(2, 5) == 18 * 25
    assert [s.id for s in topo.nvswitches] == [f"0000:0{k}:00.0" for k in (5, 6, 7, 8)]
    per_gpu = [5 if s.id in ("0000:06:00.0", "0000:07:00.0") else 4 for s in topo.nvswitches]
    for switch, links in zip(topo.nvswitches, per_gpu, strict=True):
        assert switch.gpu_links == tuple((i, links) for i in range(8))
    for g in topo.gpus:
        near = g.index < 4
        assert g.numa_affinity == ((0,) if near else (1,))
        assert g.numa_node == (0 if near else 1)  # from sysfs: NVML has no GPU NUMA id here
        assert g.cpu_affinity == ("0-55,112-167" if near else "56-111,168-223")
        assert (g.nvlink_generation, len(g.nvlinks), g.degraded_links) == (4, 18, ())
        assert all(nv.remote_type == "nvswitch" and nv.remote_gpu is None for nv in g.nvlinks)
        assert (g.fabric, g.platform, g.architecture) == (None, None, "Hopper")
    assert len(set(topo.numa_keys)) == 2
    assert topo.clique is None


def test_gb200_tray_in_one_clique(replay: Replay) -> None:
    topo, _ = replay("gb200-tray")
    assert topo.clique == GB200_CLIQUE
    assert topo.cliques == (GB200_CLIQUE,) * 4
    assert all((p.nvlinks, p.via_nvswitch) == (18, True) for p in topo.pairs)
    assert topo.pair_bandwidth(0, 3) == 18 * 50
    # The switches sit in other trays: NVML names no PCI device, so they form one plane.
    (switch,) = topo.nvswitches
    assert (switch.id, switch.pci_bus_id) == ("unknown", None)
    assert switch.gpu_links == ((0, 18), (1, 18), (2, 18), (3, 18))
    # GPU memory is a NUMA node of its own (NVML's answer), apart from the CPU nodes near
    # the GPU; the PCI device's own node (sysfs) is the Grace CPU it hangs off.
    assert [g.numa_node for g in topo.gpus] == [0, 0, 1, 1]
    assert [g.gpu_numa_id for g in topo.gpus] == [2, 10, 18, 26]
    assert topo.gpu(0).numa_affinity == expand_cpulist("0,3-9,11-17")
    assert topo.gpu(3).numa_affinity == expand_cpulist("1,19-25,27-33")
    assert [g.cpu_affinity for g in topo.gpus] == ["0-71", "0-71", "72-143", "72-143"]
    assert [g.pci_bus_id for g in topo.gpus][:2] == ["0008:01:00.0", "0009:01:00.0"]
    roots = ["pci0008:00", "pci0009:00", "pci0018:00", "pci0019:00"]
    assert [g.pcie_root for g in topo.gpus] == roots
    g = topo.gpu(2)
    assert (g.architecture, g.compute_capability, g.nvlink_generation) == ("Blackwell", "10.0", 5)
    assert g.fabric is not None
    assert (g.fabric.state, g.fabric.health, g.fabric.health_mask) == ("completed", "healthy", 426)
    assert g.platform == nvtopo.Platform("1821925170123", slot=7, tray=3, host_id=1, module_id=3)


def test_gb200_tray_with_a_gpu_still_joining(replay: Replay) -> None:
    topo, _ = replay("gb200-tray-in-progress")
    assert topo.gpu(2).fabric is not None
    assert topo.gpu(2).fabric.state == "in_progress"
    assert topo.cliques == (GB200_CLIQUE, GB200_CLIQUE, None, GB200_CLIQUE)
    assert topo.clique is None  # a node counts in a domain only when every GPU is in it
    assert all(p.nvlinks == 18 for p in topo.pairs)


def test_gb200_tray_with_an_unhealthy_gpu(replay: Replay) -> None:
    topo, _ = replay("gb200-tray-unhealthy")
    fabric = topo.gpu(1).fabric
    assert fabric is not None
    assert (fabric.state, fabric.health, fabric.health_mask) == ("completed", "unhealthy", 410)
    assert topo.cliques[1] is None
    assert topo.clique is None


def test_lost_gpu_is_left_out(replay: Replay, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nvtopo.discovery.nvml"):
        topo, fake = replay("hgx-a100-gpu3-lost")
    assert topo.gpu_indices == (0, 1, 2, 4, 5, 6, 7)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "NVML: GPU 3 (0000:4e:00.0) is lost (GpuIsLost from nvmlDeviceGetCudaComputeCapability);"
        " leaving it out of the topology"
    ]
    assert len(topo.pairs) == 21 and all(3 not in (p.a, p.b) for p in topo.pairs)
    assert all((p.nvlinks, p.via_nvswitch) == (12, True) for p in topo.pairs)
    assert topo.pair(0, 1).pcie == "PXB" and topo.pair(0, 2).pcie == "SYS"
    assert len(topo.nvswitches) == 6
    assert all(s.gpu_links == tuple((i, 2) for i in topo.gpu_indices) for s in topo.nvswitches)
    # NVML's link version 5 is NVLink 3.1: the A100's NVLink generation is 3.
    assert {g.nvlink_generation for g in topo.gpus} == {3}
    assert [g.numa_affinity for g in topo.gpus] == [(3,), (3,), (1,), (7,), (7,), (5,), (5,)]
    assert fake.shutdown_calls == 1


def test_gpu_lost_before_its_handle_opens(replay: Replay, caplog: pytest.LogCaptureFixture) -> None:
    data = load("hgx-a100-gpu3-lost")
    data["devices"][3] = {"nvmlDeviceGetHandleByIndex": {"error": "GpuIsLost"}}
    with caplog.at_level(logging.WARNING, logger="nvtopo.discovery.nvml"):
        topo, _ = replay(data)
    assert 3 not in topo.gpu_indices
    assert "GPU 3 (bus id unknown) is lost" in caplog.text


def test_dgx1_direct_links_with_one_down(replay: Replay) -> None:
    topo, _ = replay("dgx1-v100-link-down")
    for a, b in itertools.combinations(range(8), 2):
        p = topo.pair(a, b)
        assert (p.nvlinks, p.via_nvswitch) == (DGX1_NV.get((a, b), 0), False), (a, b)
        assert p.nvlinks_down == (1 if (a, b) == (0, 3) else 0)
    assert topo.path_class(0, 3) == "NV1" and topo.path_class(0, 5) == "SYS"
    assert topo.pair(0, 1).pcie == "PIX" and topo.pair(0, 2).pcie == "PHB"
    down = {g.index: [(nv.link, nv.remote_gpu) for nv in g.degraded_links] for g in topo.gpus}
    assert down == {0: [(3, 3)], 1: [], 2: [], 3: [(1, 0)], 4: [], 5: [], 6: [], 7: []}
    # This binding has no remote-device-type call: a far end that is a GPU here is that GPU.
    assert all(nv.remote_type == "gpu" for g in topo.gpus for nv in g.nvlinks)
    assert topo.nvswitches == ()
    g = topo.gpu(4)
    assert (g.brand, g.architecture, g.nvlink_generation, g.mig_mode) == ("Tesla", None, 2, False)
    assert (g.fabric, g.platform, g.numa_affinity, g.numa_node) == (None, None, (), 1)
    assert g.numa_key == "cpus:20-39,60-79"
    assert topo.nvlink_islands() == (tuple(range(8)),)
    assert topo.cuda_version == "10.1"


@pytest.mark.parametrize(
    ("recording", "line"),
    [
        ("no-driver", NO_DRIVER),
        ("driver-not-loaded", NO_KERNEL_DRIVER),
    ],
)
def test_no_driver_is_one_clear_line(replay: Replay, recording: str, line: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        replay(recording)
    assert str(info.value) == line


def test_other_init_failures_and_count_failures(replay: Replay) -> None:
    data = load("no-driver")
    data["nvmlInit"] = {"error": "NoPermission"}
    with pytest.raises(DiscoveryError, match=r"^NVML: cannot start \(nvmlInit: NoPermission\); "):
        replay(data)
    data = load("h200-vm")
    data["system"]["nvmlDeviceGetCount"] = {"error": "Unknown"}
    fake = FakeNvml(data)
    with pytest.raises(DiscoveryError, match="cannot count the GPUs"):
        discover(nvml=fake)
    assert fake.shutdown_calls == 1  # shut down even when discovery fails


def test_missing_pynvml_is_a_discovery_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(DiscoveryError, match=r"nvidia-ml-py package .* is not installed"):
        discover()


def test_default_name_is_the_host_name(replay: Replay) -> None:
    fake = FakeNvml(load("h200-vm"))
    assert discover(nvml=fake).name == socket.gethostname()


def test_without_sysfs_the_pcie_root_is_unknown(
    replay: Replay, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(nvml_source, "SYSFS_ROOT", tmp_path / "absent")
    topo = discover(nvml=FakeNvml(load("dgx-h100")))
    assert {g.pcie_root for g in topo.gpus} == {None}
    assert {g.numa_node for g in topo.gpus} == {None}
    assert topo.numa_cpus == {}
    assert topo.pair(0, 1).nvlinks == 18  # NVML's own answers do not need sysfs


# -- degraded links, older drivers and bindings ----------------------------------------------


def test_a_down_switch_link_narrows_that_gpus_pairs(replay: Replay) -> None:
    data = load("dgx-h100")
    data["devices"][5]["nvlinks"][0]["state"] = 0
    topo, _ = replay(data)
    for p in topo.pairs:
        expected = (17, 1) if 5 in (p.a, p.b) else (18, 0)
        assert (p.nvlinks, p.nvlinks_down) == expected
    assert [nv.link for nv in topo.gpu(5).degraded_links] == [0]
    by_id = {s.id: dict(s.gpu_links) for s in topo.nvswitches}
    assert by_id["0000:07:00.0"][5] == 4 and by_id["0000:07:00.0"][4] == 5


def test_uncabled_inactive_links_are_not_faults(replay: Replay) -> None:
    data = load("dgx-h100")
    for link in data["devices"][0]["nvlinks"][16:]:
        unknown = {"error": "NotSupported"}
        link.update(state=0, remote_pci=unknown, remote_type={"error": "NotFound"})
    topo, _ = replay(data)
    assert len(topo.gpu(0).nvlinks) == 16 and topo.gpu(0).degraded_links == ()
    assert topo.pair(0, 1).nvlinks == 16


def test_switches_are_recognised_without_the_remote_type_call(replay: Replay) -> None:
    data = load("dgx-h100")
    data["missing"] = ["nvmlDeviceGetNvLinkRemoteDeviceType"]
    topo, _ = replay(data)
    assert len(topo.nvswitches) == 4
    assert all((p.nvlinks, p.via_nvswitch) == (18, True) for p in topo.pairs)


def test_fabric_from_a_driver_without_the_v3_struct(replay: Replay) -> None:
    data = load("gb200-tray")
    for dev in data["devices"]:
        dev["nvmlDeviceGetGpuFabricInfoV"]["maxVersion"] = 2
    data["devices"][1]["nvmlDeviceGetGpuFabricInfoV"]["healthMask"] = 1 | 2 << 2 | 1 << 8
    topo, _ = replay(data)
    # Without a health summary the mask decides: GPU 1 reports degraded bandwidth.
    assert [g.fabric.health for g in topo.gpus if g.fabric] == [
        "healthy",
        "degraded",
        "healthy",
        "healthy",
    ]
    assert topo.clique == GB200_CLIQUE  # degraded is not unhealthy


def test_fabric_and_platform_through_an_older_binding(replay: Replay) -> None:
    data = load("gb200-tray")
    data["missing"] = [
        "nvmlDeviceGetGpuFabricInfoV",
        "c_nvmlGpuFabricInfo_v3_t",
        "c_nvmlGpuFabricInfo_v2_t",
        "c_nvmlPlatformInfo_v2_t",
    ]
    for i, dev in enumerate(data["devices"]):
        dev["nvmlDeviceGetPlatformInfo"] = {
            "maxVersion": 1,
            "chassisPhysicalSlotNumber": 7,
            "computeSlotIndex": 3,
            "nodeIndex": 1,
            "moduleId": i + 1,
        }
    topo, _ = replay(data)
    fabric = topo.gpu(0).fabric
    assert fabric is not None and (fabric.health, fabric.state) == ("unknown", "completed")
    assert topo.clique == GB200_CLIQUE
    assert topo.gpu(3).platform == nvtopo.Platform(None, slot=7, tray=3, host_id=1, module_id=4)


def test_fabric_not_supported_after_a_struct_mismatch_is_unknown(replay: Replay) -> None:
    data = load("gb200-tray")
    data["devices"][0]["nvmlDeviceGetGpuFabricInfoV"] = {"error": "NotSupported"}
    topo, _ = replay(data)
    assert topo.gpu(0).fabric is None
    assert topo.clique is None


# -- the recorder writes what the fake replays ------------------------------------------------


@pytest.mark.parametrize(
    "recording", ["h200-vm", "dgx-h100", "gb200-tray", "hgx-a100-gpu3-lost", "dgx1-v100-link-down"]
)
def test_recording_a_replayed_machine_gives_the_same_topology(
    replay: Replay, tmp_path: Path, recording: str
) -> None:
    original, _ = replay(recording)
    data = load(recording)
    source = FakeNvml(data)
    again = recorder().record(source, sysfs=write_sysfs(data, tmp_path / "rec"), source="t")
    assert source.shutdown_calls == 1
    assert again["format"] == "nvtopo/nvml-capture/v1"
    assert sorted(again["missing"]) == sorted(m for m in data["missing"] if m in recorder().USED)
    copy_topo, _ = replay(copy.deepcopy(again))
    assert copy_topo == original
    assert copy_topo.numa_cpus == original.numa_cpus


def test_recording_a_machine_without_driver(replay: Replay) -> None:
    again = recorder().record(FakeNvml(load("no-driver")))
    assert again["nvmlInit"] == {"error": "LibraryNotFound"}
    with pytest.raises(DiscoveryError, match=r"libnvidia-ml\.so\.1 not loadable"):
        replay(again)


# -- translations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00000000:1B:00.0", "0000:1b:00.0"),
        ("00000008:01:00.0", "0008:01:00.0"),
        ("0000:00:06.0", "0000:00:06.0"),
        ("00:06.0", "0000:00:06.0"),
        ("00010000:C1:00.1", "10000:c1:00.1"),
        (b"00000000:05:00.0\0", "0000:05:00.0"),
        ("not a bus id", None),
        ("", None),
    ],
)
def test_bus_ids_take_the_sysfs_form(text: str | bytes, expected: str | None) -> None:
    assert normalize_bus_id(text) == expected


def test_nvlink_version_enum_maps_to_generations() -> None:
    # nvmlNvlinkVersion_t: 1.0, 2.0, 2.2, 3.0, 3.1, 4.0, 5.0, 6.0 → generations.
    assert [nvlink_generation(v) for v in range(9)] == [None, 1, 2, 2, 3, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("summary", "mask", "health"),
    [
        (1, 0, "healthy"),
        (2, 426, "unhealthy"),
        (3, 426, "degraded"),
        (0, 0, "unknown"),
        (None, 426, "healthy"),
        (None, 2 | 1 << 2, "degraded"),  # route recovery in progress
        (None, 1 << 6, "degraded"),  # access timeout recovery in progress
        (None, 2 | 1 << 4, "unhealthy"),  # route unhealthy
        (None, 5 << 8, "unhealthy"),  # incorrect configuration: too few NVLinks
    ],
)
def test_fabric_health(summary: int | None, mask: int, health: str) -> None:
    assert fabric_health(summary, mask) == health


def test_small_translations() -> None:
    assert bits_of([0, 1 << 3]) == (67,)
    assert bits_of([]) == ()
    assert uuid_from_bytes(bytes(range(16))) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert text_field(b"1821925170123\0\0\0") == "1821925170123"
    assert text_field(b"\0" * 16) is None
    assert text_field(b"\x01\xff" + b"\0" * 14) == "01ff"
