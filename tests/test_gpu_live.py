"""Discovery on this machine's real GPUs through NVML (skipped where NVML cannot start)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

import nvtopo.discovery.nvml as nvml_source
from nvtopo import NodeTopology
from nvtopo.discovery.nvml import discover
from tests.fake_nvml import FakeNvml, recorder, write_sysfs

pytestmark = pytest.mark.gpu

_BUS_ID = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


@pytest.fixture(scope="module")
def nvml() -> tuple[Any, int]:
    """The real pynvml and its GPU count; skips the module where NVML cannot start."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML cannot start here: {type(exc).__name__}: {exc}")
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()
    return pynvml, count


def summary(topo: NodeTopology) -> str:
    lines = [f"node {topo.name}: driver {topo.driver_version}, CUDA {topo.cuda_version}"]
    for g in topo.gpus:
        fabric = g.fabric.state if g.fabric else "unknown"
        lines.append(
            f"GPU{g.index} {g.name} {g.architecture} cc{g.compute_capability} {g.memory_mib} MiB"
            f" {g.pci_bus_id} root={g.pcie_root} numa={g.numa_node} near={g.numa_affinity}"
            f" cpus={g.cpu_affinity} mig={g.mig_mode} nvlink-gen={g.nvlink_generation}"
            f" links={len(g.nvlinks)} down={len(g.degraded_links)} fabric={fabric}"
        )
    width = max([4, *(len(p.path_class) for p in topo.pairs)])
    lines.append("      " + " ".join(f"GPU{i}".ljust(width) for i in topo.gpu_indices))
    for a in topo.gpu_indices:
        cells = " ".join(topo.path_class(a, b).ljust(width) for b in topo.gpu_indices)
        lines.append(f"GPU{a}".ljust(6) + cells)
    lines.append(f"nvswitches: {len(topo.nvswitches)}, clique: {topo.clique}")
    return "\n".join(lines)


def test_live_discovery_invariants(nvml: tuple[Any, int]) -> None:
    _, count = nvml
    topo = discover()
    print(summary(topo))
    assert len(topo.gpus) == count
    assert len({g.uuid for g in topo.gpus}) == count
    for g in topo.gpus:
        assert g.uuid is not None and g.uuid.startswith("GPU-")
        assert g.memory_mib is not None and g.memory_mib > 0
        assert g.pci_bus_id is not None and _BUS_ID.match(g.pci_bus_id)
        assert g.compute_capability is not None and re.match(r"^\d+\.\d+$", g.compute_capability)
        assert g.name
    assert topo.driver_version
    assert len(topo.pairs) == count * (count - 1) // 2
    for a, b in itertools.combinations(topo.gpu_indices, 2):
        assert topo.pair(a, b) == topo.pair(b, a)
        # Each end of a direct NVLink sees it: the two GPUs count the same links.
        ab = sum(1 for nv in topo.gpu(a).nvlinks if nv.remote_gpu == b and nv.state == "up")
        ba = sum(1 for nv in topo.gpu(b).nvlinks if nv.remote_gpu == a and nv.state == "up")
        assert ab == ba, (a, b)


def test_live_recording_replays_to_the_live_topology(
    nvml: tuple[Any, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pynvml, _ = nvml
    live = discover(name="node")
    capture = recorder().record(pynvml, source="live test")
    monkeypatch.setattr(nvml_source, "SYSFS_ROOT", write_sysfs(capture, tmp_path / "sys"))
    replayed = discover(nvml=FakeNvml(capture), name="node")
    assert replayed == live
    assert replayed.numa_cpus == live.numa_cpus
